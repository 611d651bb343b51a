"""Label next: the cells of a prediction set whose labels would teach the network most, spread over the map.

Uncertainty is the margin sampling of active learning: one minus the gap between the ensemble's two most
probable classes (calibrated means, as tiles.parquet has them); the cells nearest a decision are the ones a label
moves it most for. Ranked by that alone, the top cells are often one kind (a debris type, one odd well) many
times over, so the choice is spread: the most uncertain cells (the top fifth, and at least twice as many as
wanted) and every cell unlike the training data (whose confidence means nothing, and which are exactly what the
network has never been shown) form a pool; k-means cuts the pool, in the first member's penultimate features
(the map's run), into as many clusters as cells are wanted, and each cluster gives its most uncertain cell.

Candidates are the cells the map's run scored: an image the runs trained on is left out (its label is known), and so
is a cell of a filled sheet the runs trained on (datasets.<name>.extra_labels).
The sheet follows the shared format of the label-next round trip: tile, image, files, row, col, label, group,
plate, well, p_<class>, call, novelty, rank, reason and an empty class column to fill.
"""

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from cellclass.io.atomic import atomic_path
from cellclass.predict.profiles import feature_columns

DEFAULT_CELLS = 96
POOL_SHARE = 0.2  # the most uncertain fifth of the cells, at least twice the number wanted
CLUSTER_DIMENSIONS = 20  # k-means runs on this many principal components of the features


def margin_uncertainty(probabilities):
    """(n,) one minus the gap between the two most probable classes: 1 at a tie, 0 for a certain call."""
    ordered = np.sort(np.asarray(probabilities, np.float64), axis=1)
    return 1.0 - (ordered[:, -1] - ordered[:, -2])


def pool(uncertainty, unfamiliar, wanted, share=POOL_SHARE):
    """Indices of the candidates that compete for a place: the most uncertain (top `share`, at least twice
    `wanted`) and every unfamiliar one."""
    size = min(len(uncertainty), max(int(np.ceil(share * len(uncertainty))), 2 * wanted))
    top = np.argsort(-uncertainty, kind="stable")[:size]
    return np.union1d(top, np.flatnonzero(unfamiliar))


def choose(uncertainty, features, unfamiliar, wanted, seed=0):
    """(chosen indices, most uncertain first; their k-means cluster; the number of clusters): one cell per
    cluster of the pool in feature space, the most uncertain of its cluster."""
    uncertainty = np.asarray(uncertainty, np.float64)
    candidates = pool(uncertainty, np.asarray(unfamiliar, bool), wanted)
    clusters = min(wanted, len(candidates))
    if clusters == 0:
        return np.empty(0, int), np.empty(0, int), 0
    points = StandardScaler().fit_transform(np.asarray(features, np.float64)[candidates])
    dimensions = min(CLUSTER_DIMENSIONS, points.shape[1], len(candidates))
    if dimensions < points.shape[1]:
        points = PCA(n_components=dimensions, random_state=seed).fit_transform(points)
    cut = KMeans(n_clusters=clusters, n_init=4, random_state=seed).fit_predict(points)
    best = {}
    for index, cluster in zip(candidates, cut):
        if cluster not in best or uncertainty[index] > uncertainty[best[cluster]]:
            best[cluster] = index
    chosen = np.array(sorted(best.values(), key=lambda i: (-uncertainty[i], i)), dtype=int)
    cluster_of = dict(zip(candidates, cut))
    return chosen, np.array([cluster_of[i] for i in chosen], dtype=int), clusters


def reason(probabilities, classes, novelty, cluster, clusters):
    """Short words of why a cell was picked: its margin between the two likeliest classes, whether it is unlike
    the training data, and its place on the map."""
    order = np.argsort(-probabilities)
    first, second = order[0], order[1]
    words = [
        f"margin {probabilities[first] - probabilities[second]:.2f} between {classes[first]} and {classes[second]}"
    ]
    if np.isfinite(novelty) and novelty > 1:
        words.append(f"unlike training data (novelty {novelty:.1f})")
    words.append(f"map cluster {cluster + 1} of {clusters}")
    return "; ".join(words)


def sheet(tiles, profiles, classes, *, files, layout=None, wanted=DEFAULT_CELLS, seed=0, labelled=frozenset()):
    """The label-next sheet: the chosen cells of `tiles` (a prediction set's tiles.parquet) with where they are and
    why they were chosen. `profiles`: the set's profiles (the first member's features place the cells);
    `files`: image id -> its raw files (';'-joined); `layout`: the plate map's rows, or None; `labelled`: (files,
    tile id) of the cells labelled already, left out."""
    run = profiles["run"].iloc[0]
    mine = profiles[profiles["run"] == run].set_index("tile")
    probability_columns = [f"p_{c}" for c in classes]
    known = [(files.get(image), tile) in labelled for image, tile in zip(tiles["image"], tiles["tile"])]
    scored = tiles[
        tiles["tile"].isin(mine.index) & tiles[probability_columns].notna().all(axis=1) & ~np.array(known, bool)
    ]
    scored = scored.reset_index(drop=True)
    probabilities = scored[probability_columns].to_numpy(np.float64)
    novelty = scored["novelty"].to_numpy(np.float64)
    chosen, cluster, clusters = choose(
        margin_uncertainty(probabilities),
        mine.loc[scored["tile"], feature_columns(mine)],
        np.nan_to_num(novelty) > 1,
        wanted,
        seed,
    )
    picked = scored.iloc[chosen].reset_index(drop=True)
    wells = {row["sample"]: row for row in layout or []}
    out = pd.DataFrame(
        {
            "tile": picked["tile"],
            "image": picked["image"],
            "files": picked["image"].map(files),
            "row": picked["row"],
            "col": picked["col"],
            "label": picked["label"] if "label" in picked else "",
            "group": picked["group"],
            "plate": [wells.get(i, {}).get("plate", "") for i in picked["image"]],
            "well": [wells.get(i, {}).get("well", "") for i in picked["image"]],
        }
    )
    for column in probability_columns:
        out[column] = picked[column]
    out["call"], out["novelty"] = picked["call"], picked["novelty"]
    out["rank"] = np.arange(1, len(out) + 1)
    out["reason"] = [
        reason(p, classes, v, c, clusters) for p, v, c in zip(probabilities[chosen], novelty[chosen], cluster)
    ]
    out["class"] = ""
    return out


def write_sheet(table, path):
    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False)
