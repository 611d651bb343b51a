"""What the profile and label-next jobs do: profile an experiment's test sides or a prediction set, draw the
map, and choose, show and write the cells to label next."""

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from cellclass.evaluate import runs as run_records
from cellclass.io import tilestore
from cellclass.io.atomic import atomic_path
from cellclass.learn import calibration
from cellclass.predict import cell_map, ensemble_scoring, label_next, label_page, profiles, tiling_check

log = logging.getLogger(__name__)


def run_name(run_dir):
    """A run's name in the tables: 'fold<k>/seed<s>' (the last two parts of its folder)."""
    return "/".join(Path(run_dir).parts[-2:])


def tile_lookup(tilesets):
    """tile id -> its (h, w, C) pixels in [0, 1], read from the shard file when asked."""
    where = {tile: (tileset, i) for tileset in tilesets for i, tile in enumerate(tileset.tile_ids())}

    def pixels(tile):
        tileset, i = where[tile]
        return np.asarray(tileset.tiles[i], np.float32)

    return pixels


def _profile(tilesets, members, names, temperatures, record, scored_by, layout, outputs, title, method, seed, per_fold):
    table = profiles.profile_table(
        members,
        tilesets,
        runs=names,
        scored_by=scored_by,
        classes=record["classes"],
        channels=record["channels"],
        temperatures=temperatures,
        layout=layout,
    )
    profiles.write_profiles(table, record["classes"], outputs["profiles"], outputs["wells"])
    cell_map.write_map(
        table,
        tile_lookup(tilesets),
        table=outputs["map_table"],
        figures=outputs["map"],
        gallery=outputs["gallery"],
        title=title,
        method=method,
        seed=seed,
        per_fold=per_fold,
    )


def profile_experiment(*, tile_files, run_dirs, test_images, layout, outputs, title, method="umap", seed=0, threads=1):
    """Profiles of an experiment's test side: each run profiles its own fold's test images (`test_images`:
    run folder -> sample ids), so no tile is profiled by a run that trained on it; a map panel per fold."""
    import keras

    from cellclass.learn.runtime import configure_tensorflow

    configure_tensorflow(threads=threads, seed=0, deterministic=True)
    record = tiling_check.read_run(f"{run_dirs[0]}/metrics.json")
    members = [keras.models.load_model(f"{d}/model.keras", compile=False) for d in run_dirs]
    temperatures = [calibration.temperature_of(run_records.read_metrics(d)) for d in run_dirs]
    testers = {}
    for index, run in enumerate(run_dirs):
        for sample in test_images[run]:
            testers.setdefault(sample, set()).add(index)
    tilesets = [t for t in tilestore.load_all(tile_files) if t.meta["sample"] in testers]
    _profile(
        tilesets,
        members,
        [run_name(d) for d in run_dirs],
        temperatures,
        record,
        lambda sample: testers.get(sample, ()),
        layout,
        outputs,
        title,
        method,
        seed,
        per_fold=True,
    )


def profile_prediction_set(
    *, tile_files, model_paths, run_path, run_dirs, scoring, layout, outputs, title, method="umap", seed=0, threads=1
):
    """Profiles of a prediction set's tiles by every member allowed to score them (`scoring`: PredictionSet.
    scoring); `run_dirs` names the members (empty for a package, whose members are member0, member1, ...)."""
    from cellclass.learn.runtime import configure_tensorflow

    configure_tensorflow(threads=threads, seed=0, deterministic=True)
    record = tiling_check.read_run(run_path)
    members = ensemble_scoring.load_members(model_paths)
    temperatures = ensemble_scoring.member_temperatures(model_paths)
    names = [run_name(d) for d in run_dirs] or [f"member{i}" for i in range(len(members))]
    everyone = set(range(len(members)))
    tilesets = tilestore.load_all(tile_files)
    _profile(
        tilesets,
        members,
        names,
        temperatures,
        record,
        lambda sample: set(scoring[sample]["members"]) if sample in scoring else everyone,
        layout,
        outputs,
        title,
        method,
        seed,
        per_fold=False,
    )


def write_label_next(
    *, tiles_table, profiles_path, tile_files, run_path, layout, outputs, title, wanted, seed=0, labelled_sheets=()
):
    """label_next.tsv, its contact sheet (the chosen tiles in rank order) and the labelling page. The cells of
    `labelled_sheets` (filled label-next sheets the runs trained on) are labelled already and never chosen."""
    from cellclass.io import contact_sheet
    from cellclass.io.datasets import Sample
    from cellclass.prepare import extra_labels, tiling

    classes = tiling_check.read_run(run_path)["classes"]
    tiles = pd.read_parquet(tiles_table)
    table = pd.read_parquet(profiles_path)
    tilesets = tilestore.load_all(tile_files)
    metas = {t.meta["sample"]: t.meta for t in tilesets}
    files = {sample: ";".join(meta["files"]) for sample, meta in metas.items()}
    labelled = {
        (";".join(image.files), tile)
        for sheet in labelled_sheets
        for image in extra_labels.read_sheet(sheet, classes)
        for tile in image.labels
    }
    chosen = label_next.sheet(
        tiles, table, classes, files=files, layout=layout, wanted=wanted, seed=seed, labelled=labelled
    )
    label_next.write_sheet(chosen, outputs["sheet"])
    log.info("%d cell(s) to label next of %d scored", len(chosen), len(tiles))
    pixels = tile_lookup(tilesets)
    contact_sheet.render(
        [pixels(t) for t in chosen["tile"]],
        outputs["contact_sheet"],
        max_tiles=len(chosen) or 1,
        message="no cell to label: none was scored by the map's run",
    )
    # The page carries the sheet exactly as written, so a saved sheet differs from it only in `class`.
    written = pd.read_csv(outputs["sheet"], sep="\t", dtype=str, keep_default_na=False)
    crops = []
    for image, rows in written.groupby("image", sort=False):
        meta = metas[image]
        field, _ = tiling.load_field(
            Sample(image, tuple(meta["files"]), meta["class"], meta["group"]), meta["settings"]
        )
        field = label_page.display_field(field)
        size, whole = meta["settings"]["tile_size"], meta["settings"]["kind"] == "cells"
        for index, row in rows.iterrows():
            crop = label_page.field_crop(field, int(row["row"]), int(row["col"]), size, margin=size // 2, whole=whole)
            crops.append((index, label_page.data_uri(crop)))
    crops = [uri for _, uri in sorted(crops)]
    with atomic_path(outputs["page"]) as tmp:
        tmp.write_text(label_page.page(written, crops, classes, title=title))
