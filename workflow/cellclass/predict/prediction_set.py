"""Classify new, unlabelled images with trained runs: a prediction set from tile shards to tables and page.

New images are tiled with the settings recorded by the training run itself (cellclass.predict.tiling_check),
so they cannot be prepared differently from the training data. Each member of an ensemble (the seeds of one
experiment and model) scores every tile, calibrated by its own temperature (cellclass.predict.ensemble_scoring);
the calls are the mean probability, and the spread across members is the uncertainty
(cellclass.predict.call_tables). An image the runs' training dataset also holds is scored only by the runs that
never trained on it (cellclass.predict.out_of_fold), or not at all. Takes the set's tile shards, models and
options; writes its tables, figures, overlays and findings page (cellclass.predict.prediction_page).
"""

import logging
from pathlib import Path

import pandas as pd

from cellclass.evaluate import ensemble
from cellclass.io import tilestore
from cellclass.predict import image_shift, out_of_fold, prediction_page
from cellclass.predict.abstention import ABSTAIN_DEFAULTS, why_no_call
from cellclass.predict.call_overlays import draw_overlays
from cellclass.predict.call_tables import (
    chunk_tables,
    group_table,
    with_quality,
    write_table,
)
from cellclass.predict.ensemble_scoring import (
    load_members,
    member_temperatures,
    read_references,
    scored_chunks,
)
from cellclass.predict.tiling_check import read_run
from cellclass.share import package

log = logging.getLogger(__name__)


def predict_set(
    *,
    tile_files,
    model_paths,
    run_path,
    tiles_table,
    images_tsv,
    groups_tsv,
    calls_figures,
    overlay_dir,
    findings=None,
    novelty_paths=(),
    abstain=None,
    threads=1,
    tta="none",
    scoring=None,
    overlays=50,
    quality=None,
    calibration_parts=(),
):
    """Classify every image of a prediction set: tables per tile (cell: Parquet, as there may be millions), image
    and group (TSV), a calls figure, overlays of at most `overlays` fields (None: every one), and findings that
    warn of images unlike the training data. `tta` (evaluation.tta) averages each tile's dihedral views; every
    table's `tta` column says whether it did. `novelty_paths`: each member's novelty reference; `abstain`:
    predict.<set>.abstain. `scoring` (PredictionSet.scoring) names, for each image the runs trained on some
    of, the members that may score it; every table's `scored_by` column says how each image was scored.
    `quality`: the set's qc.parquet (cellclass.predict.image_shift): images unlike the training images get no
    call while abstain.image_shift is on, and are named either way. `calibration_parts`: the runs' calibration.tsv,
    on which one ensemble temperature is fitted where their mean is under-confident (cellclass.evaluate.ensemble);
    a package's members are averaged as they are."""
    from cellclass.io.atomic import atomic_path
    from cellclass.learn.runtime import configure_tensorflow
    from cellclass.predict import call_figures

    run = read_run(run_path)
    configure_tensorflow(threads=threads, seed=0, deterministic=True)
    members, temperatures = load_members(model_paths), member_temperatures(model_paths)
    references = read_references(model_paths, novelty_paths)
    fitted = ensemble.temperature_for([Path(p).parent for p in calibration_parts]) if calibration_parts else None
    options = {**ABSTAIN_DEFAULTS, **(abstain or {}), "ensemble_temperature": fitted["temperature"] if fitted else 1.0}
    classes = run["classes"]
    qc_table = None if quality is None else pd.read_parquet(quality)
    shifted = image_shift.shifted_images(qc_table, options["image_shift"])
    tile_tables, image_tables, metas = [], [], []
    everyone = {
        "members": list(range(len(members))),
        "scored_by": out_of_fold.UNCHECKED if package.is_package(run_path) else out_of_fold.ALL_RUNS,
    }
    for path in tile_files:
        for chunk, scores, novelty in scored_chunks(
            members, references, tilestore.load(path), run, options, tta=tta, temperatures=temperatures
        ):
            tiles, images = chunk_tables(chunk, scores, novelty, classes, scoring or {}, everyone, options, shifted)
            tile_tables.append(tiles)
            image_tables.append(images)
            metas += [t.meta for t in chunk]
    images = why_no_call(with_quality(pd.concat(image_tables, ignore_index=True), qc_table), classes, options)
    tiles = pd.concat(tile_tables, ignore_index=True)
    log.info(
        "%d image(s); test-time augmentation: %s; calls: %s", len(images), tta, images["call"].value_counts().to_dict()
    )
    if scoring:
        log.warning(
            "%d image(s) are also images of the runs' training dataset; scored: %s",
            len(scoring),
            images.loc[images["image"].isin(scoring), "scored_by"].value_counts().to_dict(),
        )
    drawn = draw_overlays(metas, tiles, images, classes, overlay_dir, overlays)
    log.info("overlays of %d of %d image(s) (predict.<set>.overlays: %s)", drawn, len(images), overlays)
    groups = why_no_call(group_table(tiles, images, classes, options["max_share"]), classes, options)
    for frame, path in ((tiles, tiles_table), (images, images_tsv), (groups, groups_tsv)):
        write_table(frame.assign(tta=tta), path)
    call_figures.calls_plot(images, classes, calls_figures)
    if findings:
        with atomic_path(findings) as tmp:
            tmp.write_text(prediction_page.render_page(images, groups, options, references, qc_table, fitted))
    return images
