"""Every figure writes real PNG and SVG files and draws what its tables hold (panels, labels, one point per run);
the gallery colours and orders its tiles as the article did."""

import matplotlib
import numpy as np
import pandas as pd
import pytest

from cellclass.evaluate import figures, metrics
from cellclass.evaluate import tables as evaluate
from cellclass.io import tilestore
from cellclass.io.tilestore import TileSet

CLASSES = ["aggregates", "control"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def fake_run(experiment, dataset, seed, skill, rng, samples=4, per_sample=3):
    """History and predictions of one run whose test tiles are right with probability `skill`."""
    epochs = np.arange(1, 6)
    history = pd.DataFrame(
        {
            "experiment": experiment,
            "dataset": dataset,
            "model": "deep",
            "fold": 0,
            "seed": seed,
            "epoch": epochs,
            "train_loss": 1 / epochs,
            "train_accuracy": np.minimum(1.0, 0.5 + 0.2 * epochs + rng.uniform(-0.03, 0.03, 5)),
            "train_eval_loss": 1 / epochs,
            "train_eval_accuracy": np.minimum(1.0, 0.55 + 0.2 * epochs),
            "validation_loss": 0.7,
            "validation_accuracy": np.clip(skill + rng.uniform(-0.05, 0.05, 5), 0, 1),
        }
    )
    rows = []
    for s in range(samples):
        true = CLASSES[s % 2]
        for k in range(per_sample):
            confidence = rng.uniform(0.5, 1.0)
            predicted = true if rng.random() < skill else CLASSES[1 - s % 2]
            p = confidence if predicted == "aggregates" else 1 - confidence
            sample = f"{true}/field_{s:03d}"
            rows.append(
                {
                    "experiment": experiment,
                    "dataset": dataset,
                    "model": "deep",
                    "fold": 0,
                    "seed": seed,
                    "test_set": dataset,
                    "tile": f"{sample}@{16 * k},0",
                    "sample": sample,
                    "group": sample,
                    "true": true,
                    "predicted": predicted,
                    "p_aggregates": p,
                    "p_control": 1 - p,
                }
            )
    return history, pd.DataFrame(rows)


@pytest.fixture(scope="module")
def tables():
    rng = np.random.default_rng(1)
    parts = [fake_run("agg", "snap29", seed, 0.93, rng) for seed in range(3)]
    parts += [fake_run("sub", "snf7", seed, 0.6, rng) for seed in range(3)]
    history = pd.concat([h for h, _ in parts], ignore_index=True)
    predictions = pd.concat([p for _, p in parts], ignore_index=True)
    keys = predictions[["experiment", "dataset", "model", "fold", "seed"]].drop_duplicates()
    runs = keys.assign(validation_tiles=10, class_balance="none", imbalance_ratio=1.0)
    thresholds = {"overfit_gap": 0.2, "overfit_train": 0.9, "collapse_share": 0.95}
    return history, predictions, evaluate.run_table(predictions, history, runs, thresholds=thresholds, resamples=99)


def outputs(tmp_path, name):
    return [tmp_path / f"{name}.png", tmp_path / f"{name}.svg"]


def assert_written(paths):
    png, svg = paths
    assert png.stat().st_size > 1024 and png.read_bytes()[:8] == PNG_MAGIC
    assert svg.stat().st_size > 1024 and b"<svg" in svg.read_bytes()[:2000]
    assert sorted(p.name for p in png.parent.iterdir() if p.name.startswith(".")) == []  # no temp files left


def points(ax):
    """The (x, y) of every run's scatter points in `ax`, one array per scatter call (not the kept-epoch marks)."""
    return [
        c.get_offsets()
        for c in ax.collections
        if isinstance(c, matplotlib.collections.PathCollection) and c.get_gid() != "kept_epoch"
    ]


def legend_texts(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_accuracy_boxplot(tmp_path, tables):
    paths = outputs(tmp_path, "box")
    fig = figures.accuracy_boxplot(tables[2], paths, human={"agg": 0.93, "sub": 0.71})
    assert_written(paths)
    [ax] = fig.axes
    assert ax.get_title() == "Test balanced accuracy across runs"
    assert ax.get_ylabel() == "balanced accuracy (headline unit)"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["agg/deep on snap29 (image)", "sub/deep on snf7 (image)"]
    # One point per run (3 seeds) over each box, at its headline (image-level) accuracy.
    headline = tables[2][tables[2]["headline"]]
    for drawn, (_, runs) in zip(points(ax), headline.groupby("experiment", sort=True)):
        assert sorted(drawn[:, 1]) == sorted(runs["balanced_accuracy"])
    # The by-eye line is drawn on the experiment's own test side only: both experiments here.
    assert legend_texts(ax) == ["chance (1/K)", "majority-class rate", "human by eye (tiles)"]
    again = tmp_path / "again" / "box.svg"
    figures.accuracy_boxplot(tables[2], again, human={"agg": 0.93, "sub": 0.71})
    assert again.read_bytes() == paths[1].read_bytes()  # seeded jitter, no timestamps


def test_training_curves(tmp_path, tables):
    paths = outputs(tmp_path, "curves")
    fig = figures.training_curves(tables[0], paths)
    assert_written(paths)
    assert [ax.get_title() for ax in fig.axes] == ["training (inference mode) accuracy", "validation accuracy"]
    assert [ax.get_xlabel() for ax in fig.axes] == ["epoch", "epoch"] and fig.axes[0].get_ylabel() == "accuracy"
    for ax in fig.axes:
        # A mean curve per experiment/model over its 5 epochs, and every run's epoch as a point (2 x 3 runs x 5).
        assert [(line.get_label(), len(line.get_xdata())) for line in ax.get_lines()] == [
            ("agg/deep", 5),
            ("sub/deep", 5),
        ]
        assert sum(len(p) for p in points(ax)) == len(tables[0]) == 30

    without_validation = tables[0].assign(validation_accuracy=np.nan)
    fig = figures.training_curves(without_validation, outputs(tmp_path, "curves_no_validation"))
    assert_written(outputs(tmp_path, "curves_no_validation"))
    left, right = fig.axes
    assert len(left.get_lines()) == 2 and right.get_lines() == [] and points(right) == []
    assert [t.get_text() for t in right.texts] == ["no validation side\n(too few groups per class)"]


def test_training_curves_mark_the_kept_epoch(tmp_path, tables):
    """One diamond per run and panel: at its `kept` epoch, or its last for a run from before that column."""
    history = tables[0].assign(kept=lambda t: t["epoch"] == 3 + t["seed"] % 2)
    paths = outputs(tmp_path, "curves_kept")
    figures.training_curves(history, paths)
    svg = paths[1].read_text()
    assert svg.count('id="kept_epoch"') == 2
    assert set(figures.kept_epochs(history)["epoch"]) == {3, 4}
    assert len(figures.kept_epochs(tables[0])) == 6 and set(figures.kept_epochs(tables[0])["epoch"]) == {5}


def test_overfitting_scatter(tmp_path, tables):
    runs = tables[2].copy()
    last_tile_row = runs.index[runs["level"] == "tile"][-1]
    runs.loc[last_tile_row, ["final_train_accuracy", "balanced_accuracy", "overfit"]] = [1.0, 0.5, True]
    paths = outputs(tmp_path, "scatter")
    fig = figures.overfitting_scatter(runs, paths)
    assert_written(paths)
    [ax] = fig.axes
    assert ax.get_xlabel() == "final training accuracy (inference mode, tiles)"
    assert ax.get_ylabel() == "balanced test accuracy (tiles)"
    tile_rows = runs[runs["level"] == "tile"]
    *per_model, circled = points(ax)
    assert [len(p) for p in per_model] == [3, 3]  # one point per run and model, at the tile level
    assert sorted(circled[:, 1]) == sorted(tile_rows.loc[tile_rows["overfit"], "balanced_accuracy"])
    assert legend_texts(ax) == ["agg/deep", "sub/deep", "overfit", "train = test"]
    assert (
        len(ax.texts)
        == tile_rows.loc[tile_rows["overfit"]].groupby(["final_train_accuracy", "balanced_accuracy"]).ngroups
    )


def test_confidence_plots(tmp_path, tables):
    paths = outputs(tmp_path, "confidence")
    fig = figures.confidence_plots(tables[1], CLASSES, paths)
    assert_written(paths)
    assert len(fig.axes) == 4  # a row per test set: confidence histogram, reliability diagram
    for (left, right), (test_set, rows) in zip(np.reshape(fig.axes, (2, 2)), tables[1].groupby("test_set", sort=False)):
        assert left.get_title() == f"Confidence of right and wrong predictions ({test_set})"
        assert right.get_title().startswith("Reliability (ECE = ") and right.get_title().endswith(f"({test_set})")
        right_n = (rows["true"] == rows["predicted"]).sum()
        assert legend_texts(left) == [f"right ({right_n})", f"wrong ({len(rows) - right_n})"]
        assert (left.get_xlabel(), left.get_ylabel()) == ("top softmax probability", "tiles")


def test_confusion_plot(tmp_path, tables):
    paths = outputs(tmp_path, "confusion")
    table = metrics.confusion(tables[1], CLASSES)
    fig = figures.confusion_plot({"snap29": table, "other": table}, paths)
    assert_written(paths)
    *panels, colorbar = fig.axes
    assert [ax.get_title() for ax in panels] == ["tiles of snap29", "tiles of other"]
    assert colorbar.get_ylabel() == "share of true class"
    for ax in panels:
        assert (ax.get_xlabel(), ax.get_ylabel()) == ("predicted", "true")
        assert [t.get_text() for t in ax.get_xticklabels()] == CLASSES
        # Each cell annotated "<count>\n<share of its row>", row by row.
        counts = [int(t.get_text().split("\n")[0]) for t in ax.texts]
        assert counts == table.to_numpy().ravel().tolist() and sum(counts) == len(tables[1])


@pytest.fixture(scope="module")
def tile_dir(tmp_path_factory, tables):
    """Tile files for the test tiles of the 'snap29' runs, laid out as results/<dataset>/tiles/<sample>.npz."""
    results = tmp_path_factory.mktemp("results")
    rng = np.random.default_rng(0)
    predictions = tables[1]
    for sample, group in predictions[predictions["test_set"] == "snap29"].groupby("sample"):
        rows = sorted({int(t.split("@")[1].split(",")[0]) for t in group["tile"]})
        meta = {"dataset": "snap29", "sample": sample, "class": group["true"].iloc[0], "group": sample}
        tileset = TileSet(rng.uniform(0, 1, (len(rows), 16, 16, 2)), np.array(rows), np.zeros(len(rows)), meta)
        tilestore.save(results / "snap29" / "tiles" / f"{sample}.npz", [tileset])
    return results


def one_run(predictions):
    return predictions[(predictions["experiment"] == "agg") & (predictions["seed"] == 0)]


def test_gallery_writes_files_from_tile_files(tmp_path, tables, tile_dir):
    paths = outputs(tmp_path, "gallery")
    fig = figures.gallery(one_run(tables[1]), figures.tile_loader(sorted(tile_dir.rglob("*.npz"))), paths, n=8)
    assert_written(paths)
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 8 and all(ax.images[0].get_array().shape[:2] == (16, 16) for ax in shown)
    assert all("\ntrue: " in ax.get_title() for ax in shown)


def test_gallery_titles_green_when_right_red_when_wrong_mistakes_first(tables):
    run = one_run(tables[1]).assign(predicted=lambda t: t["true"])  # all right but for ...
    run.loc[run.index[:3], "predicted"] = "control"  # ... three confident mistakes
    run.loc[run.index[:3], ["p_aggregates", "p_control"]] = [[0.2, 0.8], [0.1, 0.9], [0.3, 0.7]]
    run.loc[run.index[:3], "true"] = "aggregates"
    seen = []

    def loader(test_set, tile_id):
        seen.append((test_set, tile_id))
        return np.zeros((8, 8, 1))

    fig = figures._gallery_figure(run, loader, n=len(run), order="confidence-wrong-first", seed=0, columns=4)
    titled = [ax for ax in fig.axes if ax.get_title()]
    assert len(titled) == len(run) == len(seen)
    correct = (run["true"] == run["predicted"]).sum()
    wrong = len(run) - correct
    colours = [matplotlib.colors.to_hex(ax.title.get_color()) for ax in titled]
    green, red = matplotlib.colors.to_hex(figures.RIGHT), matplotlib.colors.to_hex(figures.WRONG)
    assert colours == [red] * wrong + [green] * correct
    assert titled[0].get_title() == "90% control\ntrue: aggregates"
    assert [ax.get_title().split("%")[0] for ax in titled[:3]] == ["90", "80", "70"]
    r, g, _ = matplotlib.colors.to_rgb(figures.RIGHT)
    assert g > r and matplotlib.colors.to_rgb(figures.WRONG)[0] > 0.5


def test_gallery_random_order_is_seeded(tables):
    run = one_run(tables[1])
    titles = [
        [
            ax.get_title()
            for ax in figures._gallery_figure(run, lambda *_: np.ones((4, 4, 3)), 5, "random", seed, 5).axes
        ]
        for seed in (0, 0, 1)
    ]
    assert titles[0] == titles[1] != titles[2]
    with pytest.raises(ValueError, match="order"):
        figures._gallery_figure(run, None, 5, "alphabetical", 0, 5)


def test_channels_display_as_gray_green_magenta_rgb():
    from cellclass.io.contact_sheet import display_rgb, to_rgb

    two = np.zeros((2, 2, 2))
    two[..., 0] = 1.0
    assert display_rgb(two)[0, 0].tolist() == [0, 1, 0]
    assert display_rgb(two[..., ::-1])[0, 0].tolist() == [1, 0, 1]
    gray = display_rgb(np.full((2, 2, 1), 2.0))
    assert gray.shape == (2, 2, 3) and gray.max() == 1.0
    assert display_rgb(np.zeros((2, 2, 4))).shape == (2, 2, 3)
    assert to_rgb(two[None])[0, 0, 0].tolist() == [0, 255, 0]


def test_contact_sheet_is_a_near_square_grid_of_the_tiles(tmp_path):
    from PIL import Image

    from cellclass.io.contact_sheet import render, to_rgb

    tiles = np.random.default_rng(0).random((5, 8, 8, 2))
    render(tiles, tmp_path / "sheet.png", gap=2)
    sheet = np.asarray(Image.open(tmp_path / "sheet.png"))
    assert sheet.shape == (2 * 8 + 3 * 2, 3 * 8 + 4 * 2, 3)  # 2 rows x 3 columns, 2 px around every tile
    assert (sheet[12:20, 12:20] == to_rgb(tiles)[4]).all()  # the fifth tile: row 1, column 1
    assert (sheet[12:20, 22:30] == 40).all()  # the empty sixth cell
    render(tiles[:0], tmp_path / "none.png", message="no cells found")
    assert Image.open(tmp_path / "none.png").size == (320, 40)


def test_tile_loader_finds_tiles_by_id(tables, tile_dir):
    loader = figures.tile_loader(sorted(tile_dir.rglob("*.npz")))
    tile_id = one_run(tables[1])["tile"].iloc[0]
    assert loader("snap29", tile_id).shape == (16, 16, 2)
    with pytest.raises(KeyError, match="among the declared inputs"):
        loader("elsewhere", tile_id)
    with pytest.raises(KeyError, match="@999"):
        loader("snap29", tile_id.split("@")[0] + "@999,0")
