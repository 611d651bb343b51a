"""A screening plate in one real Snakemake run, with no sample sheet: a folder of imager files (one TIFF per
channel and site, named as an Opera/Operetta names them, with two z planes) and a plate map train a classifier on
control wells; a second plate (named as a public plate export names it, well `A-01`; and the same plate as
OME-Zarr) is called per cell and per well, with Z', SSMD, the dose-response fit and the plate heatmap, all in
the report. Not a file is renamed. Two of the screen's sample wells hold cells of a phenotype no run saw
(striped): they are flagged by their share of abstained cells, and no control well is. The training plate
(its control wells trained on, its sample wells not) predicted again is scored out of fold (2 folds) with every
well scored by one fold's run (assay.scoring: out_of_fold_all), or, under a single split, only on its test
wells and its sample wells, the others listed and left out of Z'."""

import html
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile

from cellclass.demo import synthetic as demo

from conftest import caption_problems, nothing_to_do, report_results, snakemake, write_config

pytestmark = pytest.mark.slow

# Opera/Operetta (Harmony): row and column numbers, field, z plane, channel.
OPERA = r"Images/r(?P<row>\d{2})c(?P<column>\d{2})f(?P<field>\d{2})p(?P<plane>\d{2})-ch(?P<channel>\d)sk1fk1fl1\.tiff"
# Channel1-01-A-01.tif: channel, site, well with a dash.
EXPORT = r"Channel(?P<channel>\d)-(?P<site>\d{2})-(?P<well>[A-P]-\d{2})\.tif"
# 16 control wells to train on (A01-C04), then 8 sample wells (C05-D06) that are only predicted.
TRAINING = {
    "name": "T1",
    "rows": 4,
    "columns": 6,
    "controls": 8,
    "doses": [0.3, 3, 30, 300],
    "replicates": 2,
    "ec50": 3.0,
    "hill": 1.0,
    "unit": "uM",
    "seed": 1,
    "size": 256,
    "cells_per_field": 20,
}
# Sample wells C02 (dose 1) and D03 (dose 100) hold striped cells: a phenotype the model has not seen.
UNFAMILIAR = {"C02", "D03"}
SCREEN = {
    **TRAINING,
    "name": "S1",
    "rows": 4,
    "columns": 6,
    "controls": 4,
    "doses": [0.1, 0.3, 1, 3, 10, 30, 100, 300],
    "replicates": 2,
    "seed": 2,
    "unfamiliar_wells": sorted(UNFAMILIAR),
}
CONFIG = {
    # Every field scaled alike (14-bit camera data), so a cell's brightness means the same in every well.
    "prepare": {
        "kind": "nuclei",
        "tile_size": 48,
        "resize_to": 32,
        "bit_depth": 14,
        "normalise": {"method": "bit_depth"},
    },
    "split": {"seed": 0, "test_fraction": 0.25},
    "train": {"models": ["small"], "runs": 1, "epochs": 3, "batch_size": 16, "threads": 1, "epoch_tiles": 400},
    "datasets": {
        "training": {"plate": {"path": "T1", "pattern": OPERA, "map": "T1_map.tsv"}},
        # The same plate under 2-fold cross-validation: every well is tested by one fold's run.
        "training_cv": {"plate": {"path": "T1", "pattern": OPERA, "map": "T1_map.tsv"}, "split": {"folds": 2}},
    },
    "attribution": {"experiments": []},
    # Every well of a plate the runs partly trained on is scored by one fold's runs, samples as controls.
    "assay": {"bootstrap_resamples": 199, "scoring": "out_of_fold_all"},
    "predict": {
        "screen": {
            "plate": {"path": "S1", "pattern": EXPORT, "map": "S1_map.tsv"},
            "experiment": "training",
            "overlays": 3,
        },
        "screen_zarr": {
            "plate": {"zarr": "S1.zarr", "map": "S1_map.csv"},
            "experiment": "training",
            "tiles_tsv": False,
        },
        # The training plate predicted again: each well only by the runs that never trained on it.
        "again": {"plate": {"path": "T1", "pattern": OPERA, "map": "T1_map.tsv"}, "experiment": "training_cv"},
        "again_single": {"plate": {"path": "T1", "pattern": OPERA, "map": "T1_map.tsv"}, "experiment": "training"},
    },
}


def channel_files(folder, spec, well):
    """A well's channel files (one site), as the plate's imager names them: the training plate as an Opera's
    first z plane, the screen as Channel<c>-01-<row>-<column>.tif."""
    if spec["name"] == "T1":
        row, column = ord(well[0]) - ord("A") + 1, int(well[1:])
        return [folder / "T1/Images" / f"r{row:02d}c{column:02d}f01p01-ch{c}sk1fk1fl1.tiff" for c in (1, 2)]
    return [folder / spec["name"] / f"Channel{c}-01-{well[0]}-{well[1:]}.tif" for c in (1, 2)]


def write_plate(folder, spec):
    """The plate's files as its imager names them and its plate map. The Opera plate's second z plane is the
    first one dimmed, so its projection is the field itself."""
    table = demo.plate_map(spec)
    for well in table["well"]:
        paths = channel_files(folder, spec, well)
        (paths[0].parent).mkdir(parents=True, exist_ok=True)
        demo.write_plate_field(paths, well=well, spec=spec)
        if spec["name"] == "T1":
            for path in paths:
                tifffile.imwrite(str(path).replace("p01-", "p02-"), tifffile.imread(path) // 2)
    columns = ["plate", "well", "condition", "class", "dose", "unit", "role"]
    table[columns].to_csv(folder / f"{spec['name']}_map.tsv", sep="\t", index=False)
    return table


def write_zarr(folder, spec):
    """The same plate as an OME-Zarr HCS plate (rows A.., columns 1..), as a converter would write it."""
    import zarr
    from ome_zarr.writer import write_image, write_plate_metadata, write_well_metadata

    table = demo.plate_map(spec)
    root = zarr.open_group(str(folder / f"{spec['name']}.zarr"), mode="w")
    paths = [f"{w[0]}/{int(w[1:])}" for w in table["well"]]
    rows = sorted({p.split("/")[0] for p in paths})
    columns = sorted({p.split("/")[1] for p in paths}, key=int)
    write_plate_metadata(root, rows, columns, paths, name=spec["name"])
    for well, path in zip(table["well"], paths):
        row, column = path.split("/")
        group = root.require_group(row).require_group(column)
        write_well_metadata(group, ["0"])
        image = np.stack([tifffile.imread(path) for path in channel_files(folder, spec, well)])
        write_image(image, group.require_group("0"), axes="cyx", scale_factors=[])
    # A CSV plate map with the wells written as the imager does not (A1): both read the same.
    table.assign(well=[f"{w[0]}{int(w[1:])}" for w in table["well"]])[
        ["plate", "well", "condition", "class", "dose", "unit", "role"]
    ].to_csv(folder / "S1_map.csv", index=False)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("plate")
    write_plate(folder, TRAINING)
    write_plate(folder, SCREEN)
    write_zarr(folder, SCREEN)
    write_config(folder, CONFIG)
    snakemake(folder)
    snakemake(folder, "--report", "report.html")
    return folder


def test_control_wells_train_grouped_by_well(run):
    split = pd.read_csv(run / "results/training/split.tsv", sep="\t")
    assert split["group"].str.fullmatch(r"T1/(A0[1-6]|B0[1-6]|C0[1-4])").all()  # the control wells alone
    assert set(split.groupby("group")["split"].nunique()) == {1}  # a well stays on one side


def test_wells_table_has_every_well_of_the_screen(run):
    wells = pd.read_csv(run / "results/assay/screen/wells.tsv", sep="\t")
    assert len(wells) == 24 and wells["plate"].eq("S1").all()
    assert {"cells", "p_aggregates", "fraction_aggregates", "score", "score_low", "score_high", "dose"} <= set(wells)
    scored = wells.dropna(subset=["score"])  # a well where most cells abstained has no score
    assert (wells["cells_found"] > 0).all() and (scored["score_low"] <= scored["score_high"]).all()
    controls = wells.groupby("role")["score"].mean()
    assert controls["positive_control"] > controls["negative_control"] + 0.3


def test_assay_quality_and_dose_response_are_stated(run):
    plates = pd.read_csv(run / "results/assay/screen/plates.tsv", sep="\t").iloc[0]
    assert plates["positive_wells"] == 4 and plates["negative_wells"] == 4
    assert np.isfinite(plates["z_prime"]) and np.isfinite(plates["ssmd"]) and plates["ssmd"] > 0
    assert plates["n_doses"] == 8 and plates["spearman_rho"] > 0.5
    findings = html.unescape((run / "results/assay/screen/findings.html").read_text())
    assert "Z' =" in findings and "SSMD =" in findings and "Spearman" in findings
    assert ("EC50" in findings) == bool(plates["converged"])
    for figure in ("dose_response.png", "heatmap_S1.png"):
        assert (run / "results/assay/screen" / figure).stat().st_size > 1000


def test_the_test_side_gets_per_well_results_too(run):
    wells = pd.read_csv(run / "results/assay/test/training/small/training/wells.tsv", sep="\t")
    split = pd.read_csv(run / "results/training/split.tsv", sep="\t")
    tested = set(split.loc[split["split"] == "test", "group"])
    assert {f"T1/{w}" for w in wells["well"]} == tested and (wells["cells"] > 0).all()
    assert (run / "results/assay/test/training/small/training/heatmap_T1.png").exists()


def test_a_plate_the_runs_trained_on_is_scored_out_of_fold(run):
    images = pd.read_csv(run / "results/predict/again/images.tsv", sep="\t").set_index("image")
    split = pd.read_csv(run / "results/training_cv/split.tsv", sep="\t")
    tested_in = split[split["split"] == "test"].drop_duplicates("sample").set_index("sample")["fold"]  # a row per tile
    controls = images[images.index.isin(tested_in.index)]
    assert len(images) == 24 and len(controls) == 16 and set(controls.index) == set(tested_in.index)
    tiles = pd.read_csv(run / "results/predict/again/tiles.tsv", sep="\t").set_index("tile")
    for fold in (0, 1):
        own = pd.read_csv(run / f"results/train/training_cv/small/fold{fold}/seed0/predictions.tsv", sep="\t")
        own = own[own["test_set"] == "training_cv"].set_index("tile")["p_aggregates"]
        mine = images.loc[tested_in[tested_in == fold].index]
        assert set(mine["scored_by"]) == {f"out of fold (fold {fold}, 1 run)"}
        # The same numbers, cell by cell, as the fold's own test side: no run that trained on a well scored it.
        called = tiles[tiles["image"].isin(mine.index)]
        assert len(called) == len(own) and np.allclose(called["p_aggregates"], own.reindex(called.index), atol=1e-4)
    wells = pd.read_csv(run / "results/assay/again/wells.tsv", sep="\t")
    assert (wells["cells"] > 0).all()
    assert wells.loc[wells["role"] != "sample", "scored_by"].str.startswith("out of fold").all()
    findings = html.unescape((run / "results/assay/again/findings.html").read_text())
    assert "16 well(s) share images with the runs' training dataset and were scored out of fold" in findings


def test_every_well_of_a_plate_is_scored_by_one_folds_runs_under_out_of_fold_all(run):
    """assay.scoring: out_of_fold_all: the training plate's sample wells (never trained on) are dealt to the 2 folds
    and scored by that fold's run alone, as its held-out control wells are; Z' is given per fold's run."""
    wells = pd.read_csv(run / "results/assay/again/wells.tsv", sep="\t")
    samples = wells[wells["role"] == "sample"]
    assert (
        len(samples) == 8
        and samples["scored_by"].str.fullmatch(r"held out with its plate's controls \(fold [01], 1 run\)").all()
    )
    assert samples["scored_by"].nunique() == 2 and samples["score"].notna().all()  # both folds score some
    scorers = pd.read_csv(run / "results/assay/again/scorers.tsv", sep="\t").set_index("scorer")
    assert list(scorers.index) == ["all wells (pooled)", "fold 0, 1 run", "fold 1, 1 run"]
    assert (scorers["positive_wells"] == [8, 4, 4]).all() and (scorers["negative_wells"] == [8, 4, 4]).all()
    assert (scorers["sample_wells"] == [8, *scorers["sample_wells"][1:]]).all() and scorers["sample_wells"][
        1:
    ].sum() == 8
    assert np.isfinite(scorers["z_prime"]).all()
    findings = html.unescape((run / "results/assay/again/findings.html").read_text())
    assert "its wells were scored by 2 ensembles" in findings and "8 other well(s)" in findings


def test_a_single_split_leaves_its_training_wells_out_and_lists_them(run):
    images = pd.read_csv(run / "results/predict/again_single/images.tsv", sep="\t").set_index("image")
    split = (
        pd.read_csv(run / "results/training/split.tsv", sep="\t").drop_duplicates("sample").set_index("sample")["split"]
    )
    tested = split[split == "test"].index
    assert set(images.loc[tested, "scored_by"]) == {"out of fold (test side of the split, 1 run)"}
    samples = images.index.str.match(r"T1/(C0[56]|D0[1-6])/")  # never trained on: scored by the run
    assert set(images.loc[samples, "scored_by"]) == {
        "held out with its plate's controls (test side of the split, 1 run)"
    }
    seen = images.drop(tested)[~images.drop(tested).index.str.match(r"T1/(C0[56]|D0[1-6])/")]
    assert len(seen) and seen["scored_by"].str.startswith("not scored").all() and seen["p_aggregates"].isna().all()
    assert (seen["call"] == seen["scored_by"]).all()
    wells = pd.read_csv(run / "results/assay/again_single/wells.tsv", sep="\t").set_index("well")
    left_out = wells[wells["scored_by"].str.startswith("not scored")]
    assert len(left_out) == len(seen) and left_out["score"].isna().all()
    plates = pd.read_csv(run / "results/assay/again_single/plates.tsv", sep="\t").iloc[0]
    assert plates["positive_wells"] + plates["negative_wells"] == len(tested)  # Z' rests on the test wells alone
    assert plates["n_wells"] == 8  # the sample wells are scored by the one run, as the test wells are
    findings = html.unescape((run / "results/assay/again_single/findings.html").read_text())
    assert f"{len(seen)} well(s) were left out of Z', SSMD and the dose-response" in findings


def test_wells_of_a_phenotype_the_model_has_not_seen_are_flagged(run):
    """The striped sample wells abstain on more of their cells than the control wells, beyond the controls'
    well-to-well spread (beta-binomial test, Benjamini-Hochberg), and are flagged; no control well is."""
    wells = pd.read_csv(
        run / "results/assay/screen/wells.tsv", sep="\t", keep_default_na=False, na_values=[""]
    ).set_index("well")
    flagged = set(wells.index[wells["unfamiliar"]])
    assert UNFAMILIAR <= flagged and len(flagged - UNFAMILIAR) <= 1  # one chance flag among 14 others at most
    assert not wells.loc[wells["role"] != "sample", "unfamiliar"].any()
    controls = wells[wells["role"] != "sample"]
    assert wells.loc[sorted(UNFAMILIAR), "abstained_share"].min() > controls["abstained_share"].max() + 0.1
    # A well where more than max_share (0.5) of the cells abstained has no score and says why.
    over = wells[wells["abstained_share"] > 0.5]
    assert over["score"].isna().all() and over["no_call"].str.startswith("no call:").all()
    plates = pd.read_csv(run / "results/assay/screen/plates.tsv", sep="\t").iloc[0]
    assert plates["unfamiliar_wells"] == len(flagged) and plates["no_call_wells"] == len(over)
    assert 0 <= plates["controls_abstained_share"] < 0.1 and np.isfinite(plates["samples_abstained_share"])
    findings = html.unescape((run / "results/assay/screen/findings.html").read_text())
    assert "beta-binomial test" in findings and "show a phenotype the model has not seen" in findings
    assert "in these control wells" in findings and "of cells abstained" in findings


def test_fields_of_both_imagers_are_read_without_renaming(run):
    """The Opera plate's wells come from row and column numbers, its two z planes one field; the export's from
    'A-01'."""
    split = pd.read_csv(run / "results/training/split.tsv", sep="\t")
    assert len(split) > 0 and split["source"].str.contains("p01-ch1sk1fk1fl1.tiff").all()
    assert split["source"].str.contains("p02-ch1sk1fk1fl1.tiff").all()
    images = pd.read_csv(run / "results/predict/screen/images.tsv", sep="\t")
    assert len(images) == 24 and images["image"].str.fullmatch(r"S1/[A-D]0[1-6]/s1").all()
    assert images["files"].str.contains(r"Channel1-01-[A-D]-0[1-6]\.tif").all()


def test_prediction_outputs_scale(run):
    """At most `overlays` fields get one; the per-cell table is Parquet, and TSV too unless switched off."""
    overlays = sorted((run / "results/predict/screen/overlays").rglob("*.png"))
    assert len(overlays) == 3 and all(p.stat().st_size > 1000 for p in overlays)
    tiles = pd.read_parquet(run / "results/predict/screen/tiles.parquet")
    assert len(tiles) == len(pd.read_csv(run / "results/predict/screen/tiles.tsv", sep="\t")) > 24
    zarr_tiles = pd.read_parquet(run / "results/predict/screen_zarr/tiles.parquet")
    assert len(zarr_tiles) == len(tiles) and zarr_tiles["image"].nunique() == 24  # every field's cells, in Parquet
    assert not (run / "results/predict/screen_zarr/tiles.tsv").exists()
    assert len(list((run / "results/predict/screen_zarr/overlays").rglob("*.png"))) == 24  # default 50 caps none


def test_the_ome_zarr_plate_gives_the_same_calls(run):
    files = pd.read_csv(run / "results/assay/screen/wells.tsv", sep="\t").set_index("well")
    zarr = pd.read_csv(run / "results/assay/screen_zarr/wells.tsv", sep="\t").set_index("well")
    assert list(zarr.index) == list(files.index)
    assert (
        np.allclose(zarr["score"], files["score"], atol=1e-5, equal_nan=True)
        and (zarr["cells"] == files["cells"]).all()
    )
    assert (zarr["unfamiliar"] == files["unfamiliar"]).all()


def test_the_ome_zarr_plate_is_read_from_its_own_metadata_cell_for_cell(run):
    """Each field that the plate's NGFF metadata lists in each of its wells (rows A-D, columns 1-6) is one image,
    read from inside the store, whose pixels are the TIFF copy's channels in order; it gives the same cells at the
    same places with the same calls as the TIFF copy."""
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    store = run / "S1.zarr"
    plate = parse_url(str(store)).root_attrs["plate"]
    assert [r["name"] for r in plate["rows"]] == list("ABCD")
    assert [c["name"] for c in plate["columns"]] == [str(c) for c in range(1, 7)]
    fields = {}
    for well in plate["wells"]:
        row, column = well["path"].split("/")
        for k, image in enumerate(parse_url(str(store / well["path"])).root_attrs["well"]["images"]):
            fields[f"S1/{row}{int(column):02d}/s{k + 1}"] = (store / well["path"] / image["path"]).resolve()
    images = pd.read_csv(run / "results/predict/screen_zarr/images.tsv", sep="\t").set_index("image")
    assert len(fields) == 24 and {image: Path(f).resolve() for image, f in images["files"].items()} == fields
    for image, path in fields.items():
        pixels = np.asarray(next(Reader(parse_url(str(path)))()).data[0])
        tiffs = channel_files(run, SCREEN, image.split("/")[1])
        assert pixels.dtype == np.uint16 and np.array_equal(pixels, np.stack([tifffile.imread(f) for f in tiffs]))
    files = pd.read_parquet(run / "results/predict/screen/tiles.parquet").set_index("tile")
    zarr = pd.read_parquet(run / "results/predict/screen_zarr/tiles.parquet").set_index("tile")
    assert list(zarr.index) == list(files.index)
    where = ["image", "row", "col", "label", "area", "call", "abstain"]
    pd.testing.assert_frame_equal(zarr[where], files[where])
    assert np.allclose(zarr["p_aggregates"], files["p_aggregates"], atol=1e-5)


def test_the_report_carries_the_plate_results_with_captions(run):
    report = (run / "report.html").read_text(errors="replace")
    for text in ("wells.tsv", "plates.tsv", "dose_response.png", "heatmap_S1.png", "Z&#x27;-factor", "SSMD"):
        assert text in report or text.replace("&#x27;", "'") in report, text
    # Each caption names its results with its own rule's wildcards, none left empty.
    results = report_results(run / "report.html")
    assert caption_problems(results) == {}
    screen, test_side = "results/assay/screen", "results/assay/test/training/small/training"
    assert "prediction set <strong>screen</strong>:" in results[f"{screen}/wells.tsv"]["caption"]
    for name in ("wells.tsv", "plates.tsv", "dose_response.png"):
        caption = results[f"{test_side}/{name}"]["caption"]
        assert "plate dataset <strong>training</strong>, as called by\n<strong>training/small</strong>" in caption, (
            caption
        )
    heatmap = results[f"{test_side}/heatmap_T1.png"]["caption"]
    assert "Plate <strong>T1</strong> of <strong>test/training/small/training</strong>" in heatmap, heatmap


def test_nothing_left_to_do(run):
    assert nothing_to_do(snakemake(run, "-n"))
