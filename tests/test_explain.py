"""Explaining a run: tile choice, masks beside demo images, enrichment summaries and the sentence."""

import numpy as np
import pandas as pd
import pytest
import tifffile

from cellclass.config import validate
from cellclass.explain import explainer as explain
from cellclass.io.errors import InputError


def own_side(n=10):
    return pd.DataFrame({"tile": [f"t{i:02d}" for i in range(2 * n)], "true": ["a"] * n + ["c"] * n})


def test_tiles_are_chosen_per_class_and_seeded():
    chosen = explain.choose_tiles(own_side(), per_class=3, seed=1)
    assert chosen["true"].value_counts().to_dict() == {"a": 3, "c": 3}
    assert set(chosen["tile"]) <= {f"t{i:02d}" for i in range(20)}
    assert chosen.equals(explain.choose_tiles(own_side(), per_class=3, seed=1))
    assert not chosen.equals(explain.choose_tiles(own_side(), per_class=3, seed=2))
    assert len(explain.choose_tiles(own_side(2), per_class=5, seed=0)) == 4


def test_masks_come_only_from_the_files_the_rule_names(tmp_path):
    """A user's folder laid out like the demo's (images/ beside masks/) is not taken as ground truth: the
    ground_truth mask reads only the files the rule names, and a tile without one is an error naming it."""
    from cellclass.io import tilestore
    from cellclass.io.tilestore import TileSet

    for sample in ("aggregates/a", "aggregates/b"):
        field = np.zeros((16, 16, 1), np.float32)
        field[4:6, 4:6] = 1.0
        meta = {
            "sample": sample,
            "class": "aggregates",
            "group": sample,
            "files": [f"images/{sample}.tif"],
            "settings": {"tile_size": 16},
        }
        tilestore.save(
            tmp_path / f"{sample.split('/')[1]}.npz", [TileSet(field[None], np.array([0]), np.array([0]), meta)]
        )
    mask = np.zeros((16, 16), np.uint8)
    mask[0:2, 0:2] = 1
    tifffile.imwrite(tmp_path / "mask_a.tif", mask)
    chosen = pd.DataFrame({"tile": ["aggregates/a@0,0", "aggregates/b@0,0"]})
    shards = [tmp_path / "a.npz", tmp_path / "b.npz"]
    puncta = {"radius": 1, "threshold": "otsu"}
    _, masks, ids = explain.load_chosen(
        chosen,
        shards,
        ["ground_truth", "puncta"],
        puncta,
        {"aggregates/a": str(tmp_path / "mask_a.tif"), "aggregates/b": str(tmp_path / "mask_a.tif")},
    )
    assert ids == ["aggregates/a@0,0", "aggregates/b@0,0"]
    assert masks["ground_truth"][0].sum() == 4 and masks["ground_truth"][0][0, 0]
    assert masks["puncta"][1][4, 4] and not masks["puncta"][1][0, 0]
    with pytest.raises(InputError, match="aggregates/b: no ground-truth puncta mask"):
        explain.load_chosen(chosen, shards, ["ground_truth"], puncta, {"aggregates/a": str(tmp_path / "mask_a.tif")})
    with pytest.raises(InputError, match="needs single-cell crops"):
        explain.load_chosen(chosen, shards, ["nucleus"], puncta, {})


def scores():
    rows = []
    for seed in (0, 1):
        for state, value in (("trained", 3.0 + seed), ("randomised", 1.0)):
            for tile in ("t1", "t2"):
                rows.append(
                    dict(
                        experiment="e",
                        model="m",
                        fold=0,
                        seed=seed,
                        method="grad_cam",
                        model_state=state,
                        tile=tile,
                        mask="ground-truth puncta",
                        enrichment=value,
                    )
                )
            rows.append(
                dict(
                    experiment="e",
                    model="m",
                    fold=0,
                    seed=seed,
                    method="grad_cam",
                    model_state=state,
                    tile="control",
                    mask="ground-truth puncta",
                    enrichment=np.nan,
                )
            )
    return pd.DataFrame(rows)


def test_summary_is_the_median_over_tiles_with_puncta():
    summary = explain.summarise(scores())
    trained = summary[summary["model_state"] == "trained"].set_index("seed")
    assert trained.loc[0, "enrichment"] == 3.0 and trained.loc[1, "enrichment"] == 4.0
    assert (summary["tiles"] == 2).all()


def test_sentence_names_the_mask_and_says_whether_the_network_looks_there():
    [line] = explain.sentences(explain.summarise(scores()))
    assert "3.50× enriched in the ground-truth puncta" in line and "range 3.00–4.00 over 2 seeds" in line
    assert "randomised network 1.00×" in line and "looks at the ground-truth puncta" in line
    assert "aggregates" not in line
    flat = scores().assign(enrichment=1.0)
    [line] = explain.sentences(explain.summarise(flat))
    assert "no clear preference" in line
    dead = scores().assign(enrichment=lambda t: t["enrichment"].where(t["model_state"] == "randomised"))
    [line] = explain.sentences(explain.summarise(dead))
    assert "maps are empty" in line


def test_seeds_that_disagree_get_no_claim():
    """The case seen on real data: gradient x input 31.5 and 1.28 on two seeds, randomised 7.2."""
    table = scores()
    trained = table["model_state"] == "trained"
    table.loc[trained & (table["seed"] == 0), "enrichment"] = 31.5
    table.loc[trained & (table["seed"] == 1), "enrichment"] = 1.28
    table.loc[~trained, "enrichment"] = 7.2
    [line] = explain.sentences(explain.summarise(table))
    assert "range 1.28–31.50 over 2 seeds" in line and "seeds disagree" in line and "looks at" not in line


def test_collapsed_runs_are_left_out_of_the_claim():
    runs = pd.DataFrame(
        {
            "experiment": "e",
            "dataset": "d",
            "model": "m",
            "fold": 0,
            "seed": [0, 1],
            "test_set": "d",
            "level": "tile",
            "collapsed": [True, False],
            "at_chance": [False, False],
        }
    )
    unreliable = explain.unreliable_runs(runs)
    assert unreliable == {("e", "m", 0, 0)}
    [line] = explain.sentences(explain.summarise(scores()), unreliable)
    assert "seed 0 left out: collapsed, at chance or constant output" in line and "1 seed" in line and "4.00×" in line
    [line] = explain.sentences(explain.summarise(scores()), {("e", "m", 0, 0), ("e", "m", 0, 1)})
    assert "no claim" in line


def test_summary_files_are_written(tmp_path):
    files = []
    for seed in (0, 1):
        path = tmp_path / f"scores{seed}.tsv"
        scores().query("seed == @seed").to_csv(path, sep="\t", index=False)
        files.append(path)
    runs = tmp_path / "runs.tsv"
    pd.DataFrame(
        {
            "experiment": "e",
            "dataset": "d",
            "model": "m",
            "fold": 0,
            "seed": [0, 1],
            "test_set": "d",
            "level": "tile",
            "collapsed": False,
            "at_chance": False,
        }
    ).to_csv(runs, sep="\t", index=False)
    out = tmp_path / "out"
    explain.write_summary(
        score_files=files,
        runs_table=runs,
        table_path=out / "t.tsv",
        findings_path=out / "f.html",
        figure_paths=[out / "e.png", out / "e.svg"],
    )
    table = pd.read_csv(out / "t.tsv", sep="\t")
    assert set(table["seed"]) == {0, 1} and "looks at the ground-truth puncta" in (out / "f.html").read_text()
    assert (out / "e.png").stat().st_size > 1000 and (out / "e.svg").stat().st_size > 1000


def test_attribution_config_is_checked():
    base = {"datasets": {"d": {"demo": {"pattern": "aggregates"}}}}
    config = validate(base)
    assert config["attribution"]["experiments"] == ["d"]
    ig = config["attribution"]["options"]["integrated_gradients"]
    assert {k: ig[k] for k in ("baseline", "steps", "output")} == {"baseline": "black", "steps": 32, "output": "logits"}
    with pytest.raises(InputError, match="no experiment 'x'"):
        validate({**base, "attribution": {"experiments": ["x"]}})
    with pytest.raises(
        InputError, match="integrated_gradients: Additional properties are not allowed \\('stpes' was unexpected\\)"
    ):
        validate({**base, "attribution": {"options": {"integrated_gradients": {"stpes": 3}}}})
    with pytest.raises(InputError, match="attribution.models: no explained experiment trains 'resnet'"):
        validate({**base, "attribution": {"models": ["resnet"]}})
    with pytest.raises(InputError, match="attribution.methods"):
        validate({**base, "attribution": {"methods": ["occlusion"]}})
