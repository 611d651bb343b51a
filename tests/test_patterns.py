"""The single-cell staining-pattern benchmark (demo/patterns.py): determinism, counts, the statistics that tell
the classes apart, the folder cellclass reads, and a check that simple features find it neither trivial nor
impossible."""

import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi
from skimage.feature import peak_local_max

from cellclass import config as cc_config
from cellclass.demo import patterns
from cellclass.io import datasets
from cellclass.io.errors import InputError

OFFSET = 100  # the camera's ADU offset


def cells(cls, n=24, seed=3, **kwargs):
    return [patterns.render_cell(cls, seed=seed, index=i, **kwargs) for i in range(n)]


def signal(cell):
    """Pixels less the camera offset and the image's own background (its dimmest corner's median)."""
    image = cell.image.astype(float) - OFFSET
    corners = [image[:8, :8], image[:8, -8:], image[-8:, :8], image[-8:, -8:]]
    return image - min(np.median(c) for c in corners)


def bright_maxima(cell):
    """Local maxima inside the nucleus at least a fifth of the way from its median to its brightest pixel."""
    smooth = ndi.gaussian_filter(signal(cell), 1.0)
    inside = cell.rho <= 1
    level = np.median(smooth[inside]) + 0.2 * (smooth[inside].max() - np.median(smooth[inside]))
    peaks = peak_local_max(smooth, min_distance=2, threshold_abs=level, labels=inside.astype(int))
    return len(peaks)


def rim_ratio(cell):
    """Mean signal on the envelope (rho 0.8-1) over the nucleus's inner half (rho < 0.5)."""
    image = signal(cell)
    return image[(cell.rho > 0.8) & (cell.rho <= 1)].mean() / image[cell.rho < 0.5].mean()


def beside_ratio(cell):
    """Brightest sixth of the cytoplasm next to the nucleus (rho 1.05-1.6) over the nucleus's mean."""
    image = signal(cell)
    ring = image[(cell.rho > 1.05) & (cell.rho < 1.6)]
    return np.percentile(ring, 83) / image[cell.rho <= 1].mean()


def grain(cell):
    """Fine texture: spread of a difference of Gaussians in the inner nucleus, over its mean."""
    image = signal(cell)
    dog = ndi.gaussian_filter(image, 0.8) - ndi.gaussian_filter(image, 2.5)
    inner = cell.rho < 0.8
    return dog[inner].std() / image[inner].mean()


def median_of(statistic, cls, **kwargs):
    return float(np.median([statistic(c) for c in cells(cls, **kwargs)]))


def test_same_seed_class_and_index_give_the_same_pixels_and_others_differ():
    first = patterns.render_cell("centromere", seed=7, index=3)
    again = patterns.render_cell("centromere", seed=7, index=3)
    assert np.array_equal(first.image, again.image) and np.array_equal(first.rho, again.rho)
    for other in (
        patterns.render_cell("centromere", seed=8, index=3),
        patterns.render_cell("centromere", seed=7, index=4),
        patterns.render_cell("speckled", seed=7, index=3),
    ):
        assert not np.array_equal(first.image, other.image)


def test_one_16_bit_cell_per_image_and_an_optional_nuclear_channel():
    one = patterns.render_cell("golgi", seed=0, index=0)
    assert one.image.dtype == np.uint16 and one.image.shape == (patterns.SIZE, patterns.SIZE)
    assert one.image.max() > 4 * OFFSET  # more than an 8-bit range: real 16-bit data
    two = patterns.render_cell("golgi", seed=0, index=0, channels=2)
    assert two.image.shape == (2, patterns.SIZE, patterns.SIZE)
    assert np.array_equal(two.image[0], one.image)  # the pattern channel does not depend on the second
    dna = two.image[1].astype(float)
    assert np.median(dna[two.nucleus]) > 4 * np.median(dna[two.rho > 1.6]) - 3 * OFFSET
    small = patterns.render_cell("membrane", seed=0, index=0, size=48)
    assert small.image.shape == (48, 48) and 0.1 < small.nucleus.mean() < 0.5


def test_nuclei_vary_in_size_and_shape_and_stay_inside_the_image():
    areas = [c.nucleus.sum() for c in cells("homogeneous", n=40)]
    assert max(areas) > 1.8 * min(areas)
    for c in cells("golgi", n=40):
        assert not c.nucleus[[0, -1], :].any() and not c.nucleus[:, [0, -1]].any()


def test_the_rare_class_has_a_third_of_the_cells_and_names_are_planned_before_files_exist():
    counts = patterns.class_counts(300)
    assert counts == {**{c: 300 for c in patterns.CLASSES}, "golgi": 100}
    assert patterns.class_counts(400, 0.25, "nucleolar")["nucleolar"] == 100
    assert patterns.class_counts(2, 0.1)["golgi"] == 1  # never an empty class
    names = patterns.cell_names(10)
    assert len(names) == 5 * 10 + 3 and len(set(names)) == len(names)
    assert names[0] == ("homogeneous", "cell_00000") and ("golgi", "cell_00002") in names
    with pytest.raises(InputError, match="unknown demo pattern class 'mitotic'"):
        patterns.class_counts(10, rare_class="mitotic")
    with pytest.raises(InputError, match="rare_fraction"):
        patterns.class_counts(10, 0)


def test_classes_differ_in_the_statistics_that_define_them():
    # Centromeres are many small dots; nucleolar staining a few nucleoli.
    assert median_of(bright_maxima, "centromere") > 2 * median_of(bright_maxima, "nucleolar")
    assert median_of(bright_maxima, "nucleolar") <= 6
    # The membrane pattern is brightest on the envelope; the others are not.
    assert median_of(rim_ratio, "membrane") > 1.5
    for cls in ("homogeneous", "speckled", "nucleolar"):
        assert median_of(rim_ratio, cls) < 1.1, cls
    # Golgi staining sits in the cytoplasm beside the nucleus.
    golgi = median_of(beside_ratio, "golgi")
    assert golgi > 1.0
    for cls in set(patterns.CLASSES) - {"golgi"}:
        assert median_of(beside_ratio, cls) < 0.4 * golgi, cls
    # Speckles are a finer, stronger texture than homogeneous chromatin.
    assert median_of(grain, "speckled", n=40) > 1.3 * median_of(grain, "homogeneous", n=40)


def test_the_weakest_patterns_look_like_homogeneous_so_the_classes_overlap():
    speckled = cells("speckled", n=60)
    weak = [c for c in speckled if c.strength < 0.25]
    assert weak, "no weak speckled cell among 60"
    homogeneous = sorted(grain(c) for c in cells("homogeneous", n=60))
    # Some weak speckled cells are no grainier than the grainiest homogeneous ones.
    assert min(grain(c) for c in weak) < homogeneous[-5]


def test_the_contact_sheet_shows_a_row_per_class(tmp_path):
    from PIL import Image

    path = patterns.contact_sheet(tmp_path / "sheet.png", per_class=3)
    width, height = Image.open(path).size
    assert height > 1.5 * width  # six rows of three cells


def write_config(tmp_path, **demo):
    return {
        "prepare": {"kind": "cells"},
        "datasets": {"patterns": {"demo_cells": {"seed": 7, **demo}}},
    }


def test_demo_cells_need_single_cell_preparation(tmp_path):
    config = write_config(tmp_path)
    config["datasets"]["patterns"]["prepare"] = {"kind": "fields"}
    with pytest.raises(InputError, match="datasets.patterns.prepare.kind: demo_cells writes one cell per image"):
        cc_config.validate(config)
    config["datasets"]["patterns"]["demo"] = {"pattern": "aggregates"}
    with pytest.raises(InputError, match="not demo and demo_cells"):
        cc_config.validate(config)


def test_written_folder_is_a_six_class_dataset_of_the_same_cells_the_workflow_writes(tmp_path):
    paths = patterns.write_dataset(tmp_path / "set", 6, 0.5, seed=7)
    assert len(paths) == 5 * 6 + 3
    found = datasets.from_folder(tmp_path / "set")
    assert datasets.class_names(found) == sorted(patterns.CLASSES)
    assert {c: sum(s.cls == c for s in found) for c in patterns.CLASSES} == patterns.class_counts(6, 0.5)
    planned = patterns.samples("x", {"cells_per_class": 6, "rare_fraction": 0.5, "rare_class": "golgi"})
    assert sorted(s.id for s in found) == sorted(s.id for s in planned)
    # A workflow block of the same class writes the same pixels.
    block = [tmp_path / "block" / f"{patterns.stem(i)}.tif" for i in range(patterns.BLOCK)]
    patterns.write_block(block[:], cls="speckled", block=0, seed=7)
    assert np.array_equal(tifffile.imread(block[4]), tifffile.imread(tmp_path / "set/speckled/cell_00004.tif"))
    assert np.array_equal(tifffile.imread(block[4]), patterns.render_cell("speckled", seed=7, index=4).image)


def test_a_block_must_be_whole_and_named_by_its_cells(tmp_path):
    with pytest.raises(InputError, match="a block is 100 cells"):
        patterns.write_block([tmp_path / "cell_00000.tif"], cls="golgi", block=0, seed=0)
    wrong = [tmp_path / f"{patterns.stem(i)}.tif" for i in range(patterns.BLOCK)]
    with pytest.raises(InputError, match="should be named cell_00100.tif"):
        patterns.write_block(wrong, cls="golgi", block=1, seed=0)


def features(cell):
    """A few hand features, from the pixels alone (no ground truth): a radial profile about the brightest
    region's centre, its spread, fine texture and the number of bright spots."""
    image = signal(cell)
    image = image / np.percentile(image, 99.5)
    mask = ndi.gaussian_filter(image, 2) > 0.25
    cy, cx = ndi.center_of_mass(mask)
    yy, xx = np.mgrid[: image.shape[0], : image.shape[1]]
    radius = np.hypot(yy - cy, xx - cx)
    profile = [image[(radius >= r) & (radius < r + 4)].mean() for r in range(0, 32, 4)]
    smooth = ndi.gaussian_filter(image, 1.0)
    spots = len(peak_local_max(smooth, min_distance=2, threshold_abs=0.3))
    dog = ndi.gaussian_filter(image, 0.8) - ndi.gaussian_filter(image, 2.5)
    offset = np.hypot(*(np.array(ndi.center_of_mass(np.clip(image, 0, None))) - (cy, cx)))
    return [*profile, mask.mean(), image[mask].std(), dog[mask].std(), np.log1p(spots), offset]


def test_simple_features_learn_the_classes_well_above_chance_but_not_perfectly():
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = [], []
    for k, cls in enumerate(patterns.CLASSES):
        for cell in cells(cls, n=patterns.class_counts(45)[cls], seed=11):
            X.append(features(cell))
            y.append(k)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, class_weight="balanced"))
    calls = cross_val_predict(model, np.array(X), np.array(y), cv=StratifiedKFold(5, shuffle=True, random_state=0))
    score = balanced_accuracy_score(y, calls)
    assert 0.5 < score < 0.95, score  # chance is 1/6


@pytest.mark.slow
def test_the_workflow_writes_the_cells_a_block_per_job_and_more_cells_rewrite_none(tmp_path):
    from conftest import job_counts, samples_in, snakemake
    from conftest import write_config as write_workflow_config

    config = {
        "prepare": {"kind": "cells", "tile_size": 32},
        "datasets": {"cells": {"demo_cells": {"cells_per_class": 4, "rare_fraction": 0.5, "seed": 7, "size": 32}}},
        "attribution": {"experiments": []},
    }
    write_workflow_config(tmp_path, config)
    assert job_counts(snakemake(tmp_path, "-n", "--until", "split"))["demo_cells"] == 6  # a block per class
    snakemake(tmp_path, "--until", "split")
    written = tmp_path / "results/demo/cells/patterns"
    assert len(list(written.glob("*/*.tif"))) == 6 * patterns.BLOCK
    ids = sorted(
        s.id for s in patterns.samples("", config["datasets"]["cells"]["demo_cells"] | {"rare_class": "golgi"})
    )
    assert sorted(samples_in(tmp_path / "results/cells/tiles")) == ids and len(ids) == 5 * 4 + 2
    same = patterns.render_cell("centromere", seed=7, index=3, size=32).image
    assert np.array_equal(tifffile.imread(written / "centromere/cell_00003.tif"), same)
    # More cells within the written blocks: the new ones are tiled, no cell is rendered again.
    config["datasets"]["cells"]["demo_cells"]["cells_per_class"] = 6
    write_workflow_config(tmp_path, config)
    assert "demo_cells" not in job_counts(snakemake(tmp_path, "-n", "--until", "split"))
