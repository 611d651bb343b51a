"""Finding raw images: class folders, sample sheets, phantom files and bad layouts."""

import logging

import pytest

from cellclass.io import datasets
from cellclass.io.errors import InputError


def touch(path, data=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def folder(tmp_path):
    for cls in ("control", "snap29"):
        for i in range(2):
            touch(tmp_path / cls / f"f{i}.tif")
    return tmp_path


def test_folder_per_class(folder):
    samples = datasets.from_folder(folder)
    assert [(s.cls, s.id) for s in samples] == [
        ("control", "control/f0"),
        ("control", "control/f1"),
        ("snap29", "snap29/f0"),
        ("snap29", "snap29/f1"),
    ]
    assert all(s.group == s.id for s in samples)


def test_phantom_files_are_skipped_with_a_log_line(folder, caplog):
    touch(folder / ".DS_Store")
    touch(folder / "control" / "._f0.tif")
    touch(folder / "control" / "Thumbs.db")
    touch(folder / "control" / "notes.txt")
    (folder / "._.DS_Store").mkdir()
    with caplog.at_level(logging.WARNING):
        samples = datasets.from_folder(folder)
    assert len(samples) == 4 and {s.cls for s in samples} == {"control", "snap29"}
    assert "phantom file" in caplog.text and "._f0.tif" in caplog.text
    assert "notes.txt: not an image file" in caplog.text


def test_class_folder_without_images(folder):
    (folder / "empty").mkdir()
    touch(folder / "empty" / ".DS_Store")
    with pytest.raises(InputError, match=r"class folder .*empty has no images"):
        datasets.from_folder(folder)


def test_one_class_is_an_error_unless_test_only(tmp_path):
    touch(tmp_path / "control" / "a.tif")
    with pytest.raises(InputError, match="only one class"):
        datasets.from_folder(tmp_path)
    assert len(datasets.from_folder(tmp_path, test_only=True)) == 1


def test_spaces_and_unicode_get_distinct_safe_ids(tmp_path):
    for name in ("zellé bild 1.tif", "zell__bild_1.tif", "plain.tif"):
        touch(tmp_path / "control" / name)
    touch(tmp_path / "other" / "x.png")
    ids = [s.id for s in datasets.from_folder(tmp_path)]
    assert len(set(ids)) == 4
    assert "control/plain" in ids
    assert all(" " not in i and i.isascii() for i in ids)


def write_sheet(path, rows, header="path\tclass\tgroup"):
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def test_sheet_with_groups_and_one_file_per_channel(folder):
    touch(folder / "control" / "f0_dapi.tif")
    sheet = write_sheet(
        folder / "sheet.tsv",
        [
            "control/f0.tif;control/f0_dapi.tif\tcontrol\twell A1",
            "control/f1.tif\tcontrol\twell A1",
            "snap29/f0.tif\tsnap29\t",
        ],
    )
    samples = datasets.from_sheet(sheet)
    assert samples[0].files == (str(folder / "control/f0.tif"), str(folder / "control/f0_dapi.tif"))
    assert samples[0].group == samples[1].group == "well A1"
    assert samples[2].group == samples[2].id == "snap29/f0"


@pytest.mark.parametrize(
    "row, message",
    [
        ("../outside.tif\tcontrol\t", "escapes the dataset folder"),
        ("control/missing.tif\tcontrol\t", "does not exist"),
        ("control/f0.tif\t\t", "empty path or class"),
        ("control/f0.tif\tcontrol\t\ncontrol/f0.tif\tsnap29\t", "listed twice"),
    ],
)
def test_bad_sheet_rows_name_sheet_and_line(folder, row, message):
    touch(folder.parent / "outside.tif")
    sheet = write_sheet(folder / "sheet.tsv", ["snap29/f0.tif\tsnap29\t", row])
    with pytest.raises(InputError, match=rf"sample sheet .*sheet.tsv, line \d+: .*{message}"):
        datasets.from_sheet(sheet)


def test_sheet_missing_column(folder):
    sheet = write_sheet(folder / "sheet.tsv", ["control/f0.tif"], header="path")
    with pytest.raises(InputError, match="missing column.*class"):
        datasets.from_sheet(sheet)


def test_demo_samples_are_planned_without_files(tmp_path):
    samples = datasets.from_demo(tmp_path, [("control", "field_000"), ("aggregates", "field_000")])
    assert samples[1].files == (str(tmp_path / "images/aggregates/field_000.tif"),)
    assert samples[1].id == "aggregates/field_000"


def test_sheet_split_column_fixes_sides(folder):
    sheet = folder / "sheet.tsv"
    sheet.write_text(
        "path\tclass\tgroup\tsplit\n"
        "control/f0.tif\tcontrol\twell1\ttrain\ncontrol/f1.tif\tcontrol\twell1\tTrain\n"
        "snap29/f0.tif\tsnap29\twell2\ttest\nsnap29/f1.tif\tsnap29\twell3\t\n"
    )
    samples = datasets.from_sheet(sheet)
    assert [s.split for s in samples] == ["train", "train", "test", ""]


@pytest.mark.parametrize(
    "rows, message",
    [
        (
            "control/f0.tif\tcontrol\tw1\ttraining\n",
            "line 2, column split: 'training' is not one of \\['', 'train', 'validation', 'test'\\]",
        ),
        (
            "control/f0.tif\tcontrol\tw1\ttrain\ncontrol/f1.tif\tcontrol\tw1\ttest\n",
            "line 3: group w1 is on split 'test' here but 'train' on line 2",
        ),
    ],
)
def test_bad_split_values_name_sheet_and_line(folder, rows, message):
    sheet = folder / "sheet.tsv"
    sheet.write_text("path\tclass\tgroup\tsplit\n" + rows + "snap29/f0.tif\tsnap29\tw9\t\n")
    with pytest.raises(InputError, match=message):
        datasets.from_sheet(sheet)
