"""Explaining a run: tile choice, masks beside demo images, enrichment summaries and the sentence."""

import numpy as np
import pandas as pd
import pytest
import tifffile

from cellclass import explain
from cellclass.config import validate
from cellclass.errors import InputError


def predictions(n=10):
    return pd.DataFrame(
        {
            "test_set": ["own"] * (2 * n) + ["other"] * 4,
            "tile": [f"t{i:02d}" for i in range(2 * n + 4)],
            "true": (["a"] * n + ["c"] * n) + ["a"] * 4,
        }
    )


def test_tiles_are_chosen_per_class_from_the_own_test_set_and_seeded():
    chosen = explain.choose_tiles(predictions(), "own", per_class=3, seed=1)
    assert chosen["true"].value_counts().to_dict() == {"a": 3, "c": 3}
    assert set(chosen["tile"]) <= {f"t{i:02d}" for i in range(20)}
    assert chosen.equals(explain.choose_tiles(predictions(), "own", per_class=3, seed=1))
    assert not chosen.equals(explain.choose_tiles(predictions(), "own", per_class=3, seed=2))
    assert len(explain.choose_tiles(predictions(2), "own", per_class=5, seed=0)) == 4


def test_ground_truth_mask_is_found_beside_a_demo_image(tmp_path):
    mask = np.zeros((8, 8), np.uint8)
    mask[2:4, 2:4] = 1
    (tmp_path / "masks/aggregates").mkdir(parents=True)
    tifffile.imwrite(tmp_path / "masks/aggregates/field_000.tif", mask)
    found = explain.ground_truth_mask([str(tmp_path / "images/aggregates/field_000.tif")])
    assert found.dtype == bool and found.sum() == 4
    assert explain.ground_truth_mask([str(tmp_path / "photos/x.tif")]) is None


def scores():
    rows = []
    for seed in (0, 1):
        for state, value in (("trained", 3.0 + seed), ("randomised", 1.0)):
            for tile in ("t1", "t2"):
                rows.append(dict(experiment="e", model="m", seed=seed, method="grad_cam",
                                 model_state=state, tile=tile, mask="ground truth", enrichment=value))
            rows.append(dict(experiment="e", model="m", seed=seed, method="grad_cam",
                             model_state=state, tile="control", mask="ground truth", enrichment=np.nan))
    return pd.DataFrame(rows)


def test_summary_is_the_median_over_tiles_with_puncta():
    summary = explain.summarise(scores())
    trained = summary[summary["model_state"] == "trained"].set_index("seed")
    assert trained.loc[0, "enrichment"] == 3.0 and trained.loc[1, "enrichment"] == 4.0
    assert (summary["tiles"] == 2).all()


def test_sentence_says_whether_the_network_looks_at_the_aggregates():
    [line] = explain.sentences(explain.summarise(scores()))
    assert "3.50× enriched" in line and "randomised network 1.00×" in line and "looks at the aggregates" in line
    flat = scores().assign(enrichment=1.0)
    [line] = explain.sentences(explain.summarise(flat))
    assert "no clear preference" in line
    dead = scores().assign(enrichment=lambda t: t["enrichment"].where(t["model_state"] == "randomised"))
    [line] = explain.sentences(explain.summarise(dead))
    assert "maps are empty" in line


def test_summary_files_are_written(tmp_path):
    run_dirs, files = [], []
    for seed in (0, 1):
        path = tmp_path / f"scores{seed}.tsv"
        scores()[lambda t: t["seed"] == seed].drop(columns=["experiment", "model", "seed"]).to_csv(path, sep="\t", index=False)
        files.append(path)
        run_dirs.append(f"results/attribution/e/m/seed{seed}")
    out = tmp_path / "out"
    explain.write_summary(score_files=files, run_dirs=run_dirs, table_path=out / "t.tsv", findings_path=out / "f.html",
                          figure_paths=[out / "e.png", out / "e.svg"])
    table = pd.read_csv(out / "t.tsv", sep="\t")
    assert set(table["seed"]) == {0, 1} and "looks at the aggregates" in (out / "f.html").read_text()
    assert (out / "e.png").stat().st_size > 1000 and (out / "e.svg").stat().st_size > 1000


def test_attribution_config_is_checked():
    base = {"datasets": {"d": {"demo": {"pattern": "aggregates"}}}}
    config = validate(base)
    assert config["attribution"]["experiments"] == ["d"]
    assert config["attribution"]["options"]["integrated_gradients"] == {"baseline": "black", "steps": 32}
    with pytest.raises(InputError, match="no experiment 'x'"):
        validate({**base, "attribution": {"experiments": ["x"]}})
    with pytest.raises(InputError, match="unknown option.*stpes"):
        validate({**base, "attribution": {"options": {"integrated_gradients": {"stpes": 3}}}})
    with pytest.raises(InputError, match="attribution.methods"):
        validate({**base, "attribution": {"methods": ["occlusion"]}})
