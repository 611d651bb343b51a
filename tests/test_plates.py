"""Screening plates: imager file names and plate maps become fields and wells; every plate-map error names the
file, the line and the field; an OME-Zarr plate is read from its own metadata."""

import numpy as np
import pytest
import tifffile

from cellclass.io import imageio, plates
from cellclass.io.errors import InputError

PATTERN = r"(?P<well>[A-P]\d{2})_s(?P<site>\d+)_w(?P<channel>\d)\.tif"
MAP = "plate\twell\tcondition\tclass\tdose\tunit\trole\n"


def write_plate(folder, wells=("A01", "A02", "B01"), sites=2, channels=2, skip=()):
    folder.mkdir(parents=True, exist_ok=True)
    for well in wells:
        for site in range(1, sites + 1):
            for channel in range(1, channels + 1):
                name = f"{well}_s{site}_w{channel}.tif"
                if name not in skip:
                    tifffile.imwrite(folder / name, np.full((32, 32), 100 * channel, np.uint16))
    (folder / "notes.txt").write_text("not an image")
    (folder / ".DS_Store").write_bytes(b"")
    return folder


def write_map(path, rows):
    path.write_text(MAP + "".join("\t".join(row) + "\n" for row in rows))
    return path


ROWS = [
    ("P1", "A01", "DMSO", "control", "", "", "negative_control"),
    ("P1", "A2", "siSNAP29", "aggregates", "", "", "positive_control"),
    ("P1", "B01", "drug", "", "3", "uM", "sample"),
]


def test_files_group_into_fields_of_channels_per_site(tmp_path):
    fields = plates.fields_from_folder(write_plate(tmp_path / "P1"), PATTERN, "P1")
    assert len(fields) == 6 and {f.plate for f in fields} == {"P1"}
    first = fields[0]
    assert (first.well, first.site) == ("A01", "1")
    assert [p.rsplit("/", 1)[1] for p in first.files] == ["A01_s1_w1.tif", "A01_s1_w2.tif"]
    pixels = imageio.read_image(first.files).pixels
    assert pixels.shape == (32, 32, 2) and pixels[0, 0].tolist() == [100, 200]


def test_samples_join_the_plate_map_and_keep_the_layout(tmp_path):
    fields = plates.fields_from_folder(write_plate(tmp_path / "P1"), PATTERN, "P1")
    table = plates.read_plate_map(write_map(tmp_path / "map.tsv", ROWS))
    samples, layout = plates.join(fields, table, tmp_path / "map.tsv", labelled_only=True)
    assert [s.id for s in samples] == ["P1/A01/s1", "P1/A01/s2", "P1/A02/s1", "P1/A02/s2"]  # B01 has no class
    assert {s.group for s in samples} == {"P1/A01", "P1/A02"} and samples[2].cls == "aggregates"
    everything, layout = plates.join(fields, table, tmp_path / "map.tsv", labelled_only=False)
    sample = next(r for r in layout if r["well"] == "B01")
    assert (sample["row"], sample["column"], sample["role"], sample["dose"], sample["unit"]) == (
        1,
        0,
        "sample",
        3.0,
        "uM",
    )
    assert len(everything) == 6


def test_a_csv_plate_map_without_a_plate_column_fits_a_single_plate(tmp_path):
    fields = plates.fields_from_folder(write_plate(tmp_path / "P1"), PATTERN, "P1")
    csv = tmp_path / "map.csv"
    csv.write_text("well,class,role\nA01,control,negative_control\nA02,aggregates,positive_control\nB01,,sample\n")
    samples, _ = plates.join(fields, plates.read_plate_map(csv), csv, labelled_only=True)
    assert len(samples) == 4


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (ROWS[:2], r"map\.tsv: no row for plate P1 well B01"),
        (
            [*ROWS, ("P1", "C05", "drug", "", "1", "uM", "sample")],
            r"map\.tsv, line 5, field well: plate P1 well C05 has no images",
        ),
        (
            [*ROWS, ("P1", "A001", "DMSO", "control", "", "", "negative_control")],
            r"map\.tsv, line 5, field well: plate P1 well A01 is listed twice \(first on line 2\)",
        ),
        (
            [("P1", "A01", "DMSO", "control", "lots", "", "negative_control"), *ROWS[1:]],
            r"map\.tsv, line 2, field dose",
        ),
        ([("P1", "Z99x", "DMSO", "control", "", "", "negative_control"), *ROWS[1:]], r"map\.tsv, line 2, field well"),
        ([("P1", "A01", "DMSO", "control", "", "", "blank"), *ROWS[1:]], r"map\.tsv, line 2, field role"),
    ],
)
def test_plate_map_errors_name_the_file_the_line_and_the_field(tmp_path, rows, message):
    fields = plates.fields_from_folder(write_plate(tmp_path / "P1"), PATTERN, "P1")
    with pytest.raises(InputError, match=message):
        plates.join(
            fields,
            plates.read_plate_map(write_map(tmp_path / "map.tsv", rows)),
            tmp_path / "map.tsv",
            labelled_only=True,
        )


def test_a_site_missing_a_channel_is_named(tmp_path):
    folder = write_plate(tmp_path / "P1", skip=("A02_s2_w2.tif",))
    with pytest.raises(InputError, match="plate P1 well A02 site 2 has no file for channel 2"):
        plates.fields_from_folder(folder, PATTERN, "P1")


def test_a_pattern_without_a_well_group_or_matching_nothing_is_an_error(tmp_path):
    folder = write_plate(tmp_path / "P1")
    with pytest.raises(InputError, match="named group 'well'"):
        plates.fields_from_folder(folder, r".*\.tif", "P1")
    with pytest.raises(InputError, match="no file matches"):
        plates.fields_from_folder(folder, r"(?P<well>[A-P]\d{2})\.png", "P1")


def test_wells_and_plate_names_are_canonical():
    assert plates.canonical_well("b3") == "B03" and plates.canonical_well("B003") == "B03"
    assert plates.canonical_well("AA12") == "AA12" and plates.canonical_well("3B") is None
    assert plates.well_position("A01") == (0, 0) and plates.well_position("P24") == (15, 23)
    assert plates.well_position("AF48") == (31, 47)
    assert plates.safe_name("plate 7/a") == "plate_7_a"


def write_zarr_plate(path):
    """A 2-well NGFF plate with 2 fields per well, written with ome-zarr as an imaging core's converter would."""
    import zarr
    from ome_zarr.writer import write_image, write_plate_metadata, write_well_metadata

    root = zarr.open_group(str(path), mode="w")
    write_plate_metadata(root, ["A", "B"], ["1", "2"], ["A/1", "B/2"], name="screen 1")
    for well in ("A/1", "B/2"):
        row, column = well.split("/")
        group = root.require_group(row).require_group(column)
        write_well_metadata(group, ["0", "1"])
        for field in ("0", "1"):
            image = np.full((2, 1, 48, 40), 7 if field == "0" else 9, np.uint16)
            image[1] += 1000
            write_image(image, group.require_group(field), axes="czyx", scale_factors=[])
    return path


def test_an_ome_zarr_plate_gives_its_wells_and_fields(tmp_path):
    store = write_zarr_plate(tmp_path / "screen.zarr")
    fields = plates.fields_from_zarr(store)
    assert [(f.plate, f.well, f.site) for f in fields] == [
        ("screen_1", "A01", "1"),
        ("screen_1", "A01", "2"),
        ("screen_1", "B02", "1"),
        ("screen_1", "B02", "2"),
    ]
    raw = imageio.read_image(fields[1].files)
    assert raw.pixels.shape == (48, 40, 2) and raw.pixels[0, 0].tolist() == [9, 1009] and raw.bit_depth == 16
    table = plates.read_plate_map(
        write_map(
            tmp_path / "map.tsv",
            [
                ("screen 1", "A01", "DMSO", "control", "", "", "negative_control"),
                ("screen 1", "B02", "siSNAP29", "aggregates", "", "", "positive_control"),
            ],
        )
    )
    samples, _ = plates.join(fields, table, tmp_path / "map.tsv", labelled_only=True)
    assert [s.group for s in samples] == ["screen_1/A01", "screen_1/A01", "screen_1/B02", "screen_1/B02"]


def test_a_folder_that_is_no_ome_zarr_plate_is_named(tmp_path):
    (tmp_path / "empty.zarr").mkdir()
    with pytest.raises(InputError, match="empty.zarr: no plate metadata"):
        plates.fields_from_zarr(tmp_path / "empty.zarr")


def write_files(folder, names, shape=(16, 16)):
    """Empty-looking TIFFs under the names an imager gives them; each file's value is its index + 1."""
    for index, name in enumerate(names):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(folder / name, np.full(shape, index + 1, np.uint16))
    return folder


# Each imager's own file names for wells B03 and C11 (2 sites, 2 channels; Opera also 2 z planes) and the pattern
# that reads them as they are.
NAMING = {
    # MetaXpress: <plate>_<well>_s<site>_w<wavelength><UUID>.TIF
    "metaxpress": (
        r"(?P<plate>[^_]+)_(?P<well>[A-P]\d{2})_s(?P<site>\d)_w(?P<channel>\d)[0-9A-F-]*\.TIF",
        [f"P7_{w}_s{s}_w{c}{u}.TIF" for w in ("B03", "C11") for s in (1, 2) for c, u in ((1, "3F2A"), (2, ""))],
    ),
    # Opera/Operetta (Harmony): r<row>c<column>f<field>p<plane>-ch<channel>sk<time>fk1fl1.tiff
    "operetta": (
        r"Images/r(?P<row>\d{2})c(?P<column>\d{2})f(?P<field>\d{2})p(?P<plane>\d{2})-ch(?P<channel>\d)sk1fk1fl1\.tiff",
        [
            f"Images/r{r:02d}c{c:02d}f{f:02d}p{p:02d}-ch{ch}sk1fk1fl1.tiff"
            for r, c in ((2, 3), (3, 11))
            for f in (1, 2)
            for p in (1, 2)
            for ch in (1, 2)
        ],
    ),
    # CellInsight/Cellomics: <plate>_<well>f<field, from 00>d<channel, from 0>.TIF
    "cellinsight": (
        r"(?P<plate>.+)_(?P<well>[A-P]\d{2})f(?P<field>\d{2})d(?P<channel>\d)\.TIF",
        [f"P7_{w}f{f:02d}d{d}.TIF" for w in ("B03", "C11") for f in (0, 1) for d in (0, 1)],
    ),
    # Channel<channel>-<field>-<row>-<column>.tif, as a public plate export names them: well 'B-03'.
    "channel_first": (
        r"Channel(?P<channel>\d)-(?P<site>\d{2})-(?P<well>[A-P]-\d{2})\.tif",
        [f"Channel{c}-{s:02d}-{w}.tif" for w in ("B-03", "C-11") for s in (1, 2) for c in (1, 2)],
    ),
    # The same with row and column apart.
    "row_column": (
        r"Channel(?P<channel>\d)-(?P<site>\d{2})-(?P<row>[A-P])-(?P<column>\d{2})\.tif",
        [f"Channel{c}-{s:02d}-{w}.tif" for w in ("B-03", "C-11") for s in (1, 2) for c in (1, 2)],
    ),
}


@pytest.mark.parametrize("imager", NAMING)
def test_each_imagers_file_names_give_wells_sites_channels_and_planes(tmp_path, imager):
    pattern, names = NAMING[imager]
    fields = plates.fields_from_folder(write_files(tmp_path / "export", names), pattern, "P7")
    assert [(f.plate, f.well) for f in fields] == [("P7", "B03")] * 2 + [("P7", "C11")] * 2
    assert len({f.site for f in fields}) == 2
    planes = 2 if imager == "operetta" else 1
    assert {f.planes for f in fields} == {planes} and {len(f.files) for f in fields} == {2 * planes}
    first = fields[0]
    value = {str(tmp_path / "export" / name): index + 1 for index, name in enumerate(names)}  # as written
    per_channel = np.reshape([value[f] for f in first.files], (2, planes))  # channel 1's planes, then channel 2's
    pixels = imageio.read_image(first.files, planes=first.planes).pixels
    assert pixels.shape == (16, 16, 2) and pixels[0, 0].tolist() == per_channel.max(axis=1).tolist()
    assert (
        imageio.read_image(first.files, planes=first.planes, plane=0).pixels[0, 0].tolist()
        == per_channel[:, 0].tolist()
    )
    if imager == "operetta":
        assert [f.rsplit("/", 1)[1][9:16] for f in first.files] == ["p01-ch1", "p02-ch1", "p01-ch2", "p02-ch2"]


def test_row_numbers_and_letters_name_wells():
    assert plates.well_name("02", "03") == "B03" == plates.well_name("b", "3") == plates.canonical_well("r02c03")
    assert plates.well_name("27", "1") == "AA01" and plates.canonical_well("B-03") == "B03"
    assert plates.well_name("0", "1") is None and plates.well_name("B", "x") is None
    assert plates.canonical_well("r0c3") is None


def test_plane_or_channel_missing_from_one_site_is_named(tmp_path):
    pattern, names = NAMING["operetta"]
    folder = write_files(tmp_path / "export", [n for n in names if n != "Images/r03c11f02p02-ch2sk1fk1fl1.tiff"])
    with pytest.raises(InputError, match="plate P7 well C11 site 2 has no file for channel 2 plane 02"):
        plates.fields_from_folder(folder, pattern, "P7")
    folder = write_files(tmp_path / "one", [n for n in names if not n.startswith("Images/r03c11f02p02")])
    with pytest.raises(InputError, match="plate P7 well C11 site 2 has no file for plane 02"):
        plates.fields_from_folder(folder, pattern, "P7")


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        (r"(?P<well>\w+)_(?P<row>\w)\.tif", "either as 'well' or as 'row' and 'column'"),
        (r"r(?P<row>\d+)\.tif", "needs a named group 'well', or 'row' and 'column'"),
        (r"(?P<well>\w+)_s(?P<site>\d)f(?P<field>\d)\.tif", "'site' and 'field' are the same"),
    ],
)
def test_a_pattern_naming_the_well_or_site_twice_or_not_at_all_is_an_error(tmp_path, pattern, message):
    with pytest.raises(InputError, match=message):
        plates.fields_from_folder(write_files(tmp_path, ["B03.tif"]), pattern, "P7")


def test_a_matched_row_and_column_that_name_no_well_are_named_with_the_file(tmp_path):
    folder = write_files(tmp_path, ["r00c03.tif"])
    with pytest.raises(InputError, match=r"r00c03\.tif: row '00' and column '03' matched, but they name no well"):
        plates.fields_from_folder(folder, r"r(?P<row>\d+)c(?P<column>\d+)\.tif", "P7")
    folder = write_files(tmp_path / "w", ["Q-x3.tif"])
    with pytest.raises(InputError, match=r"Q-x3\.tif: 'Q-x3' matched as the well, but it is no well name"):
        plates.fields_from_folder(folder, r"(?P<well>.+)\.tif", "P7")


def test_plate_fields_with_plane_files_are_samples_that_project_them(tmp_path):
    pattern, names = NAMING["operetta"]
    fields = plates.fields_from_folder(write_files(tmp_path / "export", names), pattern, "P7")
    table = plates.read_plate_map(
        write_map(
            tmp_path / "map.tsv",
            [
                ("", "r02c03", "DMSO", "control", "", "", "negative_control"),
                ("", "C-11", "siSNAP29", "aggregates", "", "", "positive_control"),
            ],
        )
    )
    samples, layout = plates.join(fields, table, tmp_path / "map.tsv", labelled_only=True)
    assert [s.id for s in samples] == ["P7/B03/s1", "P7/B03/s2", "P7/C11/s1", "P7/C11/s2"]
    assert {s.planes for s in samples} == {2} and layout[0]["site"] == "1"
