"""Image quality measures and the image-level check of new images against the training images' (prepare.qc,
predict.image_shift), on rendered demo fields and their shifted copies (cellclass.demo.shifts)."""

import numpy as np
import pandas as pd
import pytest
import tifffile

from cellclass.demo import shifts, synthetic
from cellclass.io import imageio
from cellclass.predict import image_shift
from cellclass.prepare import qc
from cellclass.prepare.foreground import foreground_mask

FIELD = {"size": 256, "cells_per_field": 30}


def fields(seed, n):
    return [
        synthetic.render_field("aggregates", cls, seed=seed, index=i, **FIELD).image
        for cls in synthetic.CLASSES
        for i in range(n)
    ]


def measured(image):
    pixels = np.moveaxis(image, 0, -1)
    mask = foreground_mask(
        pixels.astype(np.float32) / pixels.max(), method="otsu", channel=0, smooth_sigma=2, min_contrast=3
    )
    values, note = qc.measure(pixels, 16, mask)
    return values, note


def table(images):
    rows = [measured(image)[0] for image in images]
    return pd.DataFrame(rows).assign(image=[f"i{k}" for k in range(len(rows))])


@pytest.fixture(scope="module")
def training():
    return table(fields(1, 6))


def test_every_measure_of_a_two_channel_field_is_computed():
    values, note = measured(fields(1, 1)[0])
    assert note == ""
    expected = {
        f"{k}_c{c}"
        for k in ("focus", "saturated", "p01", "p50", "p99", "background", "signal_to_background")
        for c in (0, 1)
    } | {"correlation", "objects", "object_area", "density", "pixel_size"}
    assert set(values) == expected
    assert values["objects"] > 0 and values["p99_c0"] > values["p50_c0"] > 0 and values["saturated_c0"] == 0
    assert -6 < values["focus_c0"] < 0 and np.isnan(values["pixel_size"])


def test_a_constant_or_partly_nan_image_is_measured_and_says_what_could_not_be():
    values, note = qc.measure(np.full((64, 64, 2), 500, np.uint16), 16, np.zeros((64, 64), bool))
    assert np.isnan(values["focus_c0"]) and np.isnan(values["correlation"])
    assert note.startswith("cannot be computed:") and "focus_c0" in note and "correlation" in note
    pixels = np.random.default_rng(0).random((64, 64, 1)).astype(np.float32)
    pixels[:10] = np.nan
    values, note = qc.measure(pixels, None, None)
    assert np.isfinite(values["p50_c0"]) and np.isfinite(values["focus_c0"]) and "saturated_c0" not in values
    assert note == ""


def test_new_fields_of_the_training_kind_are_not_flagged(training):
    judged = qc.Reference(training).judge(table(fields(9, 3)))
    assert (judged["unlike"] == "").all(), judged["unlike"].tolist()
    assert (judged["qc_distance"] < qc.LIMIT).all()


@pytest.mark.parametrize(
    "kind, named",
    [
        ("blur_4px", "focus"),
        ("stain_5x_weaker", "99th percentile"),
        ("saturated_5pct", "saturated share"),
        ("one_stain_both_channels", "correlation"),
    ],
)
def test_a_shifted_field_is_flagged_with_the_measure_that_moved(training, kind, named):
    shifted = [shifts.shift(image, kind, seed=i) for i, image in enumerate(fields(9, 2))]
    judged = qc.Reference(training).judge(table(shifted))
    assert (judged["unlike"] != "").all()
    assert all(named in words for words in judged["unlike"]), judged["unlike"].tolist()


def test_a_set_too_small_to_fit_ranges_turns_the_check_off_and_says_so(training):
    judged, note = image_shift.compare(training.head(qc.MIN_IMAGES - 1), table(fields(9, 1)))
    assert (judged["unlike"] == "").all() and "too few to fit quality ranges" in note
    judged, note = image_shift.compare(training, table(fields(9, 1)))
    assert note == ""


def test_a_bad_training_field_is_an_outlier_of_its_own_set_and_the_findings_name_it():
    from cellclass.evaluate import findings

    images = fields(1, 6)
    images[3] = shifts.shift(images[3], "blur_4px")
    judged = qc.own_outliers(table(images))
    assert judged.loc[judged["unlike"] != "", "image"].tolist() == ["i3"]
    assert "focus" in judged.loc[3, "unlike"]
    lines = findings.quality_outliers(judged.assign(dataset="mine", qc_note=""))
    assert len(lines) == 1 and lines[0].startswith("dataset mine: 1 of 12 image(s) are unlike the rest of their set")
    assert "i3 (focus" in lines[0]


def test_pixel_size_is_read_from_the_metadata_where_the_file_gives_it(tmp_path):
    image = np.zeros((32, 32), np.uint16)
    tifffile.imwrite(
        tmp_path / "imagej.tif", image, imagej=True, resolution=(1 / 0.65, 1 / 0.65), metadata={"unit": "micron"}
    )
    tifffile.imwrite(tmp_path / "cm.tif", image, resolution=(1e4 / 0.325, 1e4 / 0.325), resolutionunit="CENTIMETER")
    tifffile.imwrite(tmp_path / "inch.tif", image, resolution=(72, 72), resolutionunit="INCH")
    tifffile.imwrite(tmp_path / "none.tif", image)
    assert imageio.pixel_size(tmp_path / "imagej.tif") == pytest.approx(0.65)
    assert imageio.pixel_size(tmp_path / "cm.tif") == pytest.approx(0.325)
    assert imageio.pixel_size(tmp_path / "inch.tif") is None and imageio.pixel_size(tmp_path / "none.tif") is None


def test_classes_that_look_different_are_each_a_yardstick():
    """Two classes whose brightness differs fourfold: each class's own fit keeps both kinds of new image and flags
    one unlike every class, which a single fit of the pooled set, spread wide by the two classes, misses."""
    rng = np.random.default_rng(0)
    levels = {"dim": 0.1, "bright": 0.4}
    training = pd.DataFrame(
        [
            {"class": cls, "p99_c0": level * rng.lognormal(0, 0.05), "focus_c0": rng.normal(-3, 0.1)}
            for cls, level in levels.items()
            for _ in range(12)
        ]
    )
    assert (qc.own_outliers(training)["unlike"] == "").all()
    new = pd.DataFrame({"p99_c0": [0.1, 0.4, 0.02], "focus_c0": [-3.0, -3.0, -3.0]})
    judged = qc.Reference(training).judge(new)
    assert judged["unlike"].tolist()[:2] == ["", ""] and "99th percentile, channel 0 low" in judged.loc[2, "unlike"]
    pooled = qc.Reference(training.assign(**{"class": "one"})).judge(new)
    assert pooled.loc[2, "unlike"] == ""
