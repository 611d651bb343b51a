"""The cost of UMAP as the map of cell profiles, beside PCA (the baseline) in one run: each map is drawn in a
fresh Python process, PCA and UMAP alternating, so numba's compile on first use is counted as a profile job
pays it. Per case the median and range over --repeats runs and the median ratio UMAP / PCA are printed.

    1. demo: the default demo's maps (the plate experiment's test side, about 280 cells, and the plate_screen
       set, about 960 cells; 512 penultimate features of `deep`), TensorFlow imported first as in the
       profile job, so the time is what the map adds to it: umap's import, numba's compile and the fit;
    2. large: --cells cells of --features features (default 10^5 x 64);
    3. neighbours: UMAP at 20,000 and 50,000 cells x 64 features with the nearest neighbours found exactly by
       scikit-learn (the map below cell_map.EXACT_BELOW cells) and by UMAP's own NN-descent (above it);
    4. import: `import umap` in a fresh interpreter (it imports TensorFlow too, for ParametricUMAP), with
       numba's on-disk cache cold (an empty NUMBA_CACHE_DIR) and warm (the same folder again).

Features are generated (cells of 20 kinds, each a cloud about its own centre), the same for both methods.
`--smallest` instead measures how well UMAP and PCA keep each cell's neighbours (sklearn's trustworthiness) on
small sets, the measure behind cellclass.predict.cell_map.UMAP_MIN_CELLS.

    python bench/umap_map.py [--repeats 3] [--cells 100000] [--features 64] [--skip large neighbours]
    python bench/umap_map.py --smallest
    python bench/umap_map.py one --method umap --cells 960 --features 512 --tensorflow   # one map, its seconds
"""

import argparse
import atexit
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))
DEMO = ((280, 512), (960, 512))  # (cells, features) of the demo's two maps


def features(cells, dims, kinds=20, seed=0):
    """(cells, dims) features of cells of `kinds` kinds, each kind a unit cloud about its own centre."""
    rng = np.random.default_rng(seed)
    kind = np.arange(cells) % kinds
    return rng.normal(size=(kinds, dims))[kind] + rng.normal(size=(cells, dims)), kind


def one(args):
    """Draw one map in this (fresh) process and print the seconds it took, umap's import included."""
    if args.tensorflow:
        import tensorflow  # noqa: F401  (the profile job has it loaded before the map)
    from cellclass.predict import cell_map

    if args.exact_below is not None:
        cell_map.EXACT_BELOW = args.exact_below
    data, _ = features(args.cells, args.features)
    started = time.perf_counter()
    cell_map.embed(data, args.method, seed=0)
    print(f"{time.perf_counter() - started:.3f}")


def timed(argv, env=None):
    """Seconds a fresh process reports on its last line of output."""
    done = subprocess.run([sys.executable, *argv], capture_output=True, text=True, env=env, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def alternate(cases, repeats):
    """{case: [seconds]} over `repeats` rounds, the cases in turn within each round (A B A B ...)."""
    seconds = {name: [] for name in cases}
    for _ in range(repeats):
        for name, run in cases.items():
            seconds[name].append(run())
            print(f"  {name}: {seconds[name][-1]:.2f} s", flush=True)
    return seconds


def report(title, seconds, pairs=()):
    print(f"\n{title}")
    for name, values in seconds.items():
        print(
            f"  {name:<42} median {statistics.median(values):8.2f} s  (range {min(values):.2f}-{max(values):.2f}, "
            f"{len(values)} runs)"
        )
    for a, b in pairs:
        ratios = [x / y for x, y in zip(seconds[a], seconds[b])]
        print(f"  {a} / {b}: median ratio {statistics.median(ratios):.1f} (range {min(ratios):.1f}-{max(ratios):.1f})")


def map_cases(cells, dims, tensorflow):
    argv = ["bench/umap_map.py", "one", "--cells", str(cells), "--features", str(dims)]
    argv += ["--tensorflow"] if tensorflow else []
    return {f"{m} {cells} x {dims}": (lambda m=m: timed([*argv, "--method", m])) for m in ("pca", "umap")}


def neighbour_cases(cells, dims):
    argv = ["bench/umap_map.py", "one", "--method", "umap", "--cells", str(cells), "--features", str(dims)]
    return {
        f"umap {cells} x {dims}, NN-descent": lambda: timed([*argv, "--exact-below", "0"]),
        f"umap {cells} x {dims}, exact (scikit-learn)": lambda: timed([*argv, "--exact-below", str(cells + 1)]),
    }


def import_cases():
    cache = tempfile.mkdtemp(prefix="numba_cache_")
    atexit.register(shutil.rmtree, cache, ignore_errors=True)
    code = "import time; t = time.perf_counter(); import umap; print(time.perf_counter() - t)"
    after_tf = "import time, tensorflow; t = time.perf_counter(); import umap; print(time.perf_counter() - t)"
    env = {**os.environ, "NUMBA_CACHE_DIR": cache}

    def cold(snippet):
        shutil.rmtree(cache)  # empty the cache before each cold run
        os.mkdir(cache)
        return timed(["-c", snippet], env)

    return {
        "import umap, numba cache cold": lambda: cold(code),
        "import umap, numba cache warm": lambda: timed(["-c", code], env),
        "import umap after tensorflow, cache warm": lambda: timed(["-c", after_tf], env),
    }


def smallest():
    """Trustworthiness (5 neighbours; 1: every map neighbour a true neighbour) of UMAP and PCA by set size."""
    from sklearn.manifold import trustworthiness

    from cellclass.predict import cell_map

    warnings.simplefilter("ignore")
    print("cells  UMAP trustworthiness  PCA trustworthiness  (mean over 3 generated sets of 16 kinds in 32-D)")
    for cells in (16, 24, 32, 48, 64, 96, 128):
        scores = []
        for seed in range(3):
            data, _ = features(cells, 32, kinds=16, seed=seed)
            # Cell_map.embed would hand a set this small to PCA: call UMAP itself, as the map would.
            scaled = (data - data.mean(0)) / data.std(0)
            umap_map = cell_map._umap(scaled, seed=0)
            pca_map = cell_map.embed(data, "pca", seed=0)
            k = min(5, cells // 2 - 1)
            scores.append(
                (trustworthiness(scaled, umap_map, n_neighbors=k), trustworthiness(scaled, pca_map, n_neighbors=k))
            )
        umap_score, pca_score = np.mean(scores, axis=0)
        print(f"{cells:5d}  {umap_score:20.3f}  {pca_score:19.3f}")


def main():
    if sys.argv[1:2] == ["one"]:
        parser = argparse.ArgumentParser()
        parser.add_argument("one")
        parser.add_argument("--method", choices=("umap", "pca"), required=True)
        parser.add_argument("--cells", type=int, required=True)
        parser.add_argument("--features", type=int, required=True)
        parser.add_argument("--tensorflow", action="store_true")
        parser.add_argument("--exact-below", type=int, help="cell_map.EXACT_BELOW for this map")
        return one(parser.parse_args())
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cells", type=int, default=100_000)
    parser.add_argument("--features", type=int, default=64)
    parser.add_argument("--skip", nargs="*", default=[], choices=("demo", "large", "neighbours", "import"))
    parser.add_argument("--smallest", action="store_true")
    args = parser.parse_args()
    if args.smallest:
        return smallest()
    os.chdir(REPO)
    if "demo" not in args.skip:
        for cells, dims in DEMO:
            cases = map_cases(cells, dims, tensorflow=True)
            report(
                f"demo-sized map, fresh process, TensorFlow loaded first: {cells} cells x {dims} features",
                alternate(cases, args.repeats),
                [tuple(reversed(list(cases)))],
            )
    if "large" not in args.skip:
        cases = map_cases(args.cells, args.features, tensorflow=False)
        report(
            f"large map, fresh process: {args.cells} cells x {args.features} features",
            alternate(cases, args.repeats),
            [tuple(reversed(list(cases)))],
        )
    if "neighbours" not in args.skip:
        for cells in (20_000, 50_000):
            cases = neighbour_cases(cells, 64)
            report(
                f"nearest neighbours for UMAP, fresh process: {cells} cells x 64 features",
                alternate(cases, args.repeats),
                [tuple(cases)],
            )
    if "import" not in args.skip:
        report("import umap in a fresh interpreter", alternate(import_cases(), args.repeats))


if __name__ == "__main__":
    main()
