"""Planning cost with thousands of raw images: our workflow against a trivial Snakefile, in one run.

For each N (default 500, 1000, 2000, 5000) it writes N tiny raw images
(16x16 8-bit PNG, two classes, `data/<class>/img_NNNNN.png`), a config with
one folder dataset and one experiment on it, and times:

(a) build: `snakemake -n` from scratch on the default target: discovery,
    config checking and the DAG of every job (tile, augment, split, train,
    evaluation, figures);
(b) no-op: `snakemake -n --until augment split` once the prepare stage is
    complete: the DAG again plus Snakemake 9's rerun checks (mtime, params,
    input, code, software-env) on every tile/augment/split output. The script
    checks that this dry run really has nothing to do.

How (b) gets a completed prepare stage: tiling thousands of images for real
takes about a second of CPU per image (a Python process per job), too long for
a benchmark. So the prepare jobs are run by a small executor plugin
(bench/plugins/snakemake_executor_plugin_emptyoutputs, Snakemake's public
plugin interface; stock `--touch` only touches outputs that exist and pauses
0.1 s per job) that creates each job's outputs empty; with --cores 256 so that
the scheduler hands out jobs in large batches. That gives every output file and
its Snakemake metadata record exactly as a real run leaves them, only with
empty contents, which planning never reads (no checkpoints). The column "setup
s" is that setup run: Snakemake's own bookkeeping for running every prepare
job, without the work. `--check-real N` (default 40) backs the shortcut: it
prepares N images for real and shows the no-op time after the real run next to
the one after the empty-outputs run.

Baseline: a trivial Snakefile with the same jobs (one-input-one-output `tile`
per image and `augment` per training image, one `split` over all tiles, `shell:
touch`), its image list read from a text file: no config validation, no
discovery, no log/benchmark/conda/params/script directives. The ratio is our
planning time over the baseline's, i.e. our overhead over Snakemake's own
per-job cost. Times are wall-clock seconds of the whole `snakemake` process
(about 2-3 s of it is importing Snakemake); a second table gives CPU seconds,
which other load on the machine disturbs less; `--repeat R` keeps the fastest
of R dry runs. Targets: roughly linear growth and a no-op under 30 s at 5,000
images.

`--groups-n N` (off by default) also times a real run of the tile jobs on N
images with and without `--groups tile=prepare --group-components prepare=K`.

`--repo DIR` benchmarks another checkout of the workflow (its Snakefile and
its workflow/cellclass package), e.g. a `git archive` of a commit.

    python bench/dag.py [--sizes 500,1000,2000,5000] [--repeat 1] [--check-real 40] [--groups-n 0] [--repo .]
"""

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from cellclass import split
from cellclass.datasets import from_folder

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from workflow_helpers import job_counts  # noqa: E402  (the one parser of Snakemake's job table)

SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
CLASSES = ("control", "treated")
PREPARE = ("--until", "augment", "split")

# An executor plugin (bench/plugins) whose jobs only create their outputs, empty.
PLUGINS = Path(__file__).resolve().parent / "plugins"
EMPTY_OUTPUTS = ("--executor", "emptyoutputs")

BASELINE = """
NAMES = open("names.txt").read().split()
TRAIN = open("train.txt").read().split()

rule all:
    input:
        expand("base/tiles/{name}.txt", name=NAMES),
        expand("base/augmented/{name}.txt", name=TRAIN),
        "base/split.txt",

rule tile:
    input: "data/{name}.png"
    output: "base/tiles/{name}.txt"
    shell: "touch {output}"

rule split:
    input: expand("base/tiles/{name}.txt", name=NAMES)
    output: "base/split.txt"
    shell: "touch {output}"

rule augment:
    input: "base/tiles/{name}.txt"
    output: "base/augmented/{name}.txt"
    shell: "touch {output}"
"""


def write_images(root, n, seed=0):
    """N 16x16 8-bit PNGs, classes alternating: a bright square on noise."""
    rng = np.random.default_rng(seed)
    names = []
    for i in range(n):
        cls = CLASSES[i % 2]
        (root / cls).mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 60, (16, 16), dtype=np.uint8)
        pixels[4:12, 4:12] += np.uint8(120 + 60 * (i % 2))
        Image.fromarray(pixels).save(root / cls / f"img_{i:05d}.png")
        names.append(f"{cls}/img_{i:05d}")
    return names


def write_ours(folder, data):
    folder.mkdir(parents=True)
    config = {
        "prepare": {"tile_size": 16, "foreground": {"method": "none"}},
        "train": {"models": ["small"], "runs": 1},
        "datasets": {"bench": {"path": str(data)}},
        "experiments": {"bench": {"dataset": "bench"}},
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(config))


def write_baseline(folder, data, names):
    folder.mkdir(parents=True)
    (folder / "Snakefile").write_text(BASELINE)
    (folder / "data").symlink_to(data)
    sides = split.assign(from_folder(data), seed=0, test_fraction=0.2)
    (folder / "names.txt").write_text("\n".join(names))
    (folder / "train.txt").write_text("\n".join(n for n in names if sides[n] == "train"))


def run(folder, *args, snakefile=None, empty_outputs=False):
    """Run snakemake in `folder`; returns (wall s, CPU s, output)."""
    ours = snakefile is None
    command = [SNAKEMAKE, "--snakefile", str(snakefile or REPO / "Snakefile"), "--directory", str(folder)]
    if ours:
        command += ["--configfile", str(folder / "config.yaml")]
    command += ["--cores", "256" if empty_outputs else "2", *(EMPTY_OUTPUTS if empty_outputs else ()), *args]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    paths = [str(REPO / "workflow"), str(PLUGINS), os.environ.get("PYTHONPATH")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, paths))}
    result = subprocess.run(command, check=False, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    output = result.stdout + result.stderr
    if result.returncode != 0:
        sys.exit(f"snakemake {' '.join(args)} failed in {folder}:\n{output[-3000:]}")
    return wall, cpu, output


def noop(folder, *args, **kwargs):
    """A dry run that must have nothing to do; returns (wall s, CPU s)."""
    wall, cpu, output = run(folder, "-n", *args, **kwargs)
    if job_counts(output):
        sys.exit(f"the no-op dry run in {folder} scheduled jobs:\n{output[-3000:]}")
    return wall, cpu


def best(repeat, time_it):
    """The fastest of `repeat` runs (wall s, CPU s): other load only ever adds time."""
    runs = [time_it() for _ in range(repeat)]
    return min(r[0] for r in runs), min(r[1] for r in runs)


def measure(tmp, n, repeat=1):
    data = tmp / "data"
    names = write_images(data, n)
    write_ours(tmp / "ours", data)
    write_baseline(tmp / "base", data, names)
    baseline = tmp / "base" / "Snakefile"
    row = {"n": n, "jobs": sum(job_counts(run(tmp / "ours", "-n")[2]).values())}
    row["build"], row["build_cpu"] = best(repeat, lambda: run(tmp / "ours", "-n"))
    row["base_build"], row["base_build_cpu"] = best(repeat, lambda: run(tmp / "base", "-n", snakefile=baseline))
    row["setup"], _, _ = run(tmp / "ours", *PREPARE, empty_outputs=True)
    row["noop"], row["noop_cpu"] = best(repeat, lambda: noop(tmp / "ours", *PREPARE))
    run(tmp / "base", snakefile=baseline, empty_outputs=True)
    row["base_noop"], row["base_noop_cpu"] = best(repeat, lambda: noop(tmp / "base", snakefile=baseline))
    return row


def check_real(tmp, n):
    """No-op after a real prepare run vs after the empty-outputs run, on the same N images."""
    data = tmp / "data"
    write_images(data, n)
    for name in ("real", "empty"):
        write_ours(tmp / name, data)
    start = time.perf_counter()
    run(tmp / "real", *PREPARE)
    real_s = time.perf_counter() - start
    run(tmp / "empty", *PREPARE, empty_outputs=True)
    return real_s, noop(tmp / "real", *PREPARE)[0], noop(tmp / "empty", *PREPARE)[0]


def grouping(tmp, n, size):
    """Wall and CPU seconds of a real tile run on N images, as single jobs and in groups."""
    data = tmp / "data"
    write_images(data, n)
    times = {}
    for name, extra in (("plain", ()), ("grouped", ("--groups", "tile=prepare", "--group-components", f"prepare={size}"))):
        write_ours(tmp / name, data)
        times[name] = run(tmp / name, "--until", "tile", *extra)[:2]
    return times


def print_tables(rows):
    print("\nwall-clock seconds; ratio = ours / baseline")
    print(f"{'N':>6} {'jobs':>6} {'build':>7} {'base':>7} {'ratio':>6} {'no-op':>7} {'base':>7} {'ratio':>6} {'setup s':>8}")
    for r in rows:
        print(
            f"{r['n']:>6} {r['jobs']:>6} {r['build']:>7.1f} {r['base_build']:>7.1f} {r['build'] / r['base_build']:>6.2f}"
            f" {r['noop']:>7.1f} {r['base_noop']:>7.1f} {r['noop'] / r['base_noop']:>6.2f} {r['setup']:>8.1f}"
        )
    print("\nCPU seconds")
    print(f"{'N':>6} {'build':>7} {'base':>7} {'ratio':>6} {'no-op':>7} {'base':>7} {'ratio':>6}")
    for r in rows:
        print(
            f"{r['n']:>6} {r['build_cpu']:>7.1f} {r['base_build_cpu']:>7.1f} {r['build_cpu'] / r['base_build_cpu']:>6.2f}"
            f" {r['noop_cpu']:>7.1f} {r['base_noop_cpu']:>7.1f} {r['noop_cpu'] / r['base_noop_cpu']:>6.2f}"
        )
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        print(f"\ngrowth from N={first['n']} to N={last['n']} ({last['n'] / first['n']:.0f}x images):")
        for key, label in (("build", "build"), ("noop", "no-op"), ("base_build", "baseline build"), ("base_noop", "baseline no-op")):
            growth = []
            for suffix in ("", "_cpu"):
                a, b = first[key + suffix], last[key + suffix]
                growth.append(f"{b / a:5.1f}x {(b - a) / (last['n'] - first['n']) * 1000:5.1f} ms/image")
            print(f"  {label:<15} wall {growth[0]}   CPU {growth[1]}")
        verdict = "yes" if last["noop"] < 30 else "NO"
        print(f"no-op under 30 s at N={last['n']}: {verdict} ({last['noop']:.1f} s)")


def main():
    global REPO
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="500,1000,2000,5000", help="comma-separated image counts")
    parser.add_argument("--check-real", type=int, default=40, help="images prepared for real to back the empty-outputs shortcut (0: skip)")
    parser.add_argument("--groups-n", type=int, default=0, help="images for the job-group comparison (0: skip)")
    parser.add_argument("--group-size", type=int, default=100, help="tile jobs per group")
    parser.add_argument("--repeat", type=int, default=1, help="time each dry run this often, keep the fastest")
    parser.add_argument("--repo", type=Path, default=REPO, help="workflow checkout to benchmark")
    args = parser.parse_args()
    REPO = args.repo.resolve()
    sizes = sorted(int(s) for s in args.sizes.split(",") if s)
    print(f"{REPO}: load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; snakemake --cores 2")

    rows = []
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            rows.append(measure(Path(tmp), n, args.repeat))
        print(f"  N={n}: done", flush=True)

    if rows:
        print_tables(rows)
    if args.check_real:
        with tempfile.TemporaryDirectory() as tmp:
            real_s, after_real, after_empty = check_real(Path(tmp), args.check_real)
        print(
            f"\ncheck at N={args.check_real}: real prepare run {real_s:.0f} s; "
            f"no-op after it {after_real:.1f} s, after the empty-outputs run {after_empty:.1f} s"
        )
    if args.groups_n:
        with tempfile.TemporaryDirectory() as tmp:
            times = grouping(Path(tmp), args.groups_n, args.group_size)
        (plain, plain_cpu), (grouped, grouped_cpu) = times["plain"], times["grouped"]
        print(
            f"\nreal tile run of N={args.groups_n} images, --cores 2: {plain:.0f} s ({plain_cpu:.0f} s CPU) as single jobs, "
            f"{grouped:.0f} s ({grouped_cpu:.0f} s CPU) in groups of {args.group_size} ({plain / grouped:.2f}x)"
        )


if __name__ == "__main__":
    main()
