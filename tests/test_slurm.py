"""The workflow on a real (one-node, localhost) Slurm through snakemake-executor-plugin-slurm.

Uses the workflow profile in profiles/slurm as a user would; only what a
throwaway cluster without accounting needs (no account, squeue for job
states, short status delays) and a smaller job grouping are given on the
command line. Skips, saying why, where Slurm is not installed or we are not
root (`.ci/run` installs Debian's Slurm packages).
"""

import copy
import os
import re
import signal
import subprocess
import time

import pandas as pd
import pytest
import yaml

from conftest import REPO, TINY, job_counts, local_rules, snakemake_command, write_config
from slurm_cluster import start_cluster

pytestmark = pytest.mark.slow

# A misconfigured executor can wait forever and ignore SIGTERM: the whole
# process group is killed after this many seconds.
HARD_TIMEOUT = 900
GROUP_COMPONENTS = 3

# Even tinier than TINY: 4 + 2 fields, one epoch of one small model.
SLURM_TINY = copy.deepcopy(TINY)
SLURM_TINY["train"].update(epochs=1, runs=1, epoch_tiles=200)
SLURM_TINY["datasets"]["tiny"]["demo"].update(fields_per_class=2, cells_per_field=20)
SLURM_TINY["datasets"]["tiny_holdout"]["demo"].update(cells_per_field=20)

# Local-only settings of this test cluster, never in the profile.
LOCAL_CLUSTER_ARGS = [
    "--slurm-no-account",
    "--slurm-status-command",
    "squeue",
    "--slurm-init-seconds-before-status-checks",
    "2",
    "--slurm-keep-successful-logs",
    "--latency-wait",
    "5",
]


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    yield from start_cluster(tmp_path_factory.mktemp("slurm_cluster"))


def run_snakemake(folder, *args, cores=2, timeout=HARD_TIMEOUT):
    """Run snakemake in its own process group; kill the group on timeout.

    Output goes to a file, not a pipe, so leftover children can never keep
    the test waiting for an end of file.
    """
    command = snakemake_command(folder, *args, cores=cores)
    # A pytest started inside a Slurm job must not hand its job's settings on.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SRUN_", "SALLOC_"))}
    log = folder / "snakemake.out"
    with open(log, "w") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
        )
        try:
            returncode = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            returncode = None
    return returncode, log.read_text(errors="replace")


def capped_resources(cluster):
    """The profile's resources, with memory capped so two jobs fit the test node.

    Command-line --default-resources/--set-resources replace the profile's
    wholesale, so every other value is passed on as the profile has it.
    """
    profile = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    cap = cluster.memory_mb // 2

    def items(resources):
        return [f"{k}={min(v, cap) if k == 'mem_mb' else v}" for k, v in resources.items()]

    args = ["--default-resources", *items(profile["default-resources"])]
    args += ["--set-resources"]
    for rule, resources in profile["set-resources"].items():
        args += [f"{rule}:{item}" for item in items(resources)]
    return args


@pytest.fixture(scope="module")
def slurm_run(cluster, tmp_path_factory):
    folder = tmp_path_factory.mktemp("slurm")
    write_config(folder, SLURM_TINY)
    before = len(cluster.submitted_jobs())
    start = time.monotonic()
    returncode, output = run_snakemake(
        folder,
        "--workflow-profile",
        str(REPO / "profiles/slurm"),
        *LOCAL_CLUSTER_ARGS,
        *capped_resources(cluster),
        "--group-components",
        f"demo={GROUP_COMPONENTS}",
        "--verbose",
        # The profile's `cores: 8` sizes group jobs; this node has 2 CPUs, and
        # groups of 1 CPU let two of them run side by side.
        cores=1,
    )
    seconds = time.monotonic() - start
    if returncode != 0:
        tail = "\n".join(output.splitlines()[-150:])
        why = f"killed after {HARD_TIMEOUT}s" if returncode is None else f"exit status {returncode}"
        pytest.fail(f"snakemake --executor slurm failed ({why}):\n{tail}")
    print(f"workflow on Slurm: {seconds:.0f}s")
    return folder, output, cluster.submitted_jobs()[before:]


def planned_jobs(folder):
    """Jobs per rule that a dry run plans, before anything ran (a fresh folder)."""
    dry = folder.parent / (folder.name + "_dry")
    dry.mkdir()
    write_config(dry, SLURM_TINY)
    returncode, output = run_snakemake(dry, "-n", timeout=300)
    assert returncode == 0, output
    return job_counts(output)


# The Snakefile's localrules: jobs of seconds that never wait in a queue.
LOCAL = local_rules()


def test_workflow_runs_through_sbatch(slurm_run):
    folder, output, submitted = slurm_run
    summary = pd.read_csv(folder / "results/evaluation/summary.tsv", sep="\t")
    assert set(summary["test_set"]) == {"tiny", "tiny_holdout"}
    assert (folder / "results/figures/test_accuracy.png").stat().st_size > 1000

    jobs = planned_jobs(folder)
    total = sum(jobs.values())
    remote = sum(n for rule, n in jobs.items() if rule not in LOCAL)
    assert re.search(rf"^{total} of {total} steps \(100%\) done", output, re.MULTILINE), output[-3000:]
    submissions = re.findall(r"has been submitted with SLURM jobid (\d+) \(log: (\S+)\)", output)
    # Every submission Snakemake reports reached this cluster's controller, and nothing else did.
    assert sorted(jobid for jobid, _ in submissions) == sorted(submitted)
    # The demo's one-field jobs are grouped, GROUP_COMPONENTS fields per sbatch; a shard's
    # tile or augment job is one sbatch of its own, as is every other job.
    groups = [log for _, log in submissions if "/group_demo" in log]
    assert len(groups) == -(-jobs["demo_field"] // GROUP_COMPONENTS)
    assert len(submissions) == len(groups) + remote - jobs["demo_field"]
    shard_jobs = [log for _, log in submissions if "/rule_tile/" in log or "/rule_augment/" in log]
    assert len(shard_jobs) == jobs["tile"] + jobs["augment"] and jobs["tile"] < jobs["demo_field"]
    assert not [log for _, log in submissions for rule in LOCAL if f"/rule_{rule}/" in log]  # local rules stay here
    # A group asks for `--cores` CPUs at most (its jobs then run in turn).
    group_calls = [line for line in output.splitlines() if "sbatch call:" in line and "/group_demo" in line]
    assert len(group_calls) == len(groups) and all("--cpus-per-task=1 " in call for call in group_calls), group_calls
    print(f"{remote} jobs ({jobs}) in {len(submissions)} sbatch submissions, {len(groups)} of them groups")


def test_gpu_rules_asked_for_a_gpu(slurm_run, cluster):
    """Training (and any other rule the profile gives a GPU) got `--gpus` from sbatch."""
    _, output, _ = slurm_run
    profile = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    gpu_rules = {rule for rule, resources in profile["set-resources"].items() if resources.get("gpu")}
    assert "train" in gpu_rules
    ran = set()
    for rule in gpu_rules:
        call = re.compile(rf"sbatch call: .*--comment '?rule_{rule}(_wildcards_|'?\s)")
        calls = [line for line in output.splitlines() if call.search(line)]
        assert all("--gpus=1" in call for call in calls), calls
        # What the controller granted, as long as it remembers the job (MinJobAge).
        for jobid in re.findall(rf"has been submitted with SLURM jobid (\d+) \(log: \S*/rule_{rule}/", output):
            assert "gpu" in cluster.job(jobid).get("TresPerJob", ""), (rule, cluster.job(jobid))
            ran.add(rule)
    assert "train" in ran
