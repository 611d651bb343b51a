"""A throwaway single-node Slurm cluster on localhost, for tests/test_slurm.py.

Debian's slurmctld/slurmd/slurm-client (`.ci/run` installs them) with
`auth/none` and `cred/none`: no munge, no accounting database, no cgroups.
One node, `localhost`, with every CPU, most of the memory and one fake GPU
(`gres.conf` points it at /dev/null), so a job asking for `--gpus=1` is
scheduled as on a real GPU node.

The config has to be /etc/slurm/slurm.conf: inside a job the executor's job
step clears `SLURM_CONF` (and most `SLURM_*` variables) before its `srun`.
It is written only where no slurm.conf exists or where the one there is ours
(first line `MARK`); a real cluster's config is never touched. Our files are
removed again when the session ends.

Without accounting `sacct` cannot answer, so Snakemake must query job states
with `squeue` (`--slurm-status-command squeue`), which only sees jobs for
`MIN_JOB_AGE` seconds after they end; the plugin itself falls back to sacct
unless MinJobAge is at least 3x its first status delay.
"""

import ctypes
import fcntl
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

CONF_DIR = Path("/etc/slurm")
LOCK = Path("/run/cellclass-test-slurm.lock")  # one test cluster per machine at a time
MARK = "# cellclass test cluster: written by tests/slurm_cluster.py, removed after the tests"
NODE = "localhost"
PARTITION = "debug"
MIN_JOB_AGE = 3600  # seconds a finished job stays visible to squeue/scontrol
MEMORY_MARGIN_MB = 1024  # left to the OS and to Snakemake itself
STARTUP_TIMEOUT = 60

SLURM_CONF = """{mark}
ClusterName=cellclass
SlurmctldHost={node}
SlurmUser=root
SlurmdUser=root
AuthType=auth/none
CredType=cred/none
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
GresTypes=gpu
ReturnToService=2
MinJobAge={min_job_age}
SchedulerParameters=sched_interval=2
StateSaveLocation={state}/ctld
SlurmdSpoolDir={state}/d
SlurmctldPidFile={state}/slurmctld.pid
SlurmdPidFile={state}/slurmd.pid
SlurmctldLogFile={state}/slurmctld.log
SlurmdLogFile={state}/slurmd.log
SlurmctldDebug=debug
SlurmdDebug=info
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory} Gres=gpu:1 State=UNKNOWN
PartitionName={partition} Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""

GRES_CONF = """{mark}
NodeName={node} Name=gpu File=/dev/null
"""


class Cluster:
    """Where the running test cluster keeps its state and logs."""

    def __init__(self, state, cpus, memory_mb):
        self.state = Path(state)
        self.cpus = cpus
        self.memory_mb = memory_mb

    @property
    def ctld_log(self):
        return self.state / "slurmctld.log"

    def submitted_jobs(self):
        """Slurm job ids the controller accepted from sbatch, from its log."""
        text = self.ctld_log.read_text(errors="replace")
        return re.findall(r"_slurm_rpc_submit_batch_job: JobId=(\d+)", text)

    def job(self, jobid):
        """`scontrol show job` as a dict (while the job is younger than MinJobAge)."""
        out = subprocess.run(
            ["scontrol", "-o", "show", "job", str(jobid)], check=False, capture_output=True, text=True
        ).stdout
        return dict(re.findall(r"(\S+?)=(\S*)", out))


def missing():
    """Why this machine cannot run the test cluster, or None when it can."""
    for tool in ("sbatch", "squeue", "scontrol", "sinfo", "slurmctld", "slurmd"):
        if shutil.which(tool) is None:
            return f"Slurm is not installed ({tool} not found; .ci/run installs Debian's slurmctld slurmd slurm-client)"
    if os.geteuid() != 0:
        return "the test Slurm cluster runs its daemons as root and writes /etc/slurm; not root"
    conf = CONF_DIR / "slurm.conf"
    if conf.exists() and not conf.read_text(errors="replace").startswith(MARK):
        return f"{conf} belongs to another Slurm cluster; not touching it"
    return None


def node_memory_mb():
    meminfo = Path("/proc/meminfo").read_text()
    total_kb = int(re.search(r"^MemTotal:\s+(\d+)", meminfo, re.MULTILINE).group(1))
    return max(total_kb // 1024 - MEMORY_MARGIN_MB, 512)


def _sinfo_state():
    result = subprocess.run(
        ["sinfo", "--noheader", "--nodes", NODE, "--format", "%T"],
        check=False,
        capture_output=True,
        text=True,
        timeout=10,
    )
    return result.stdout.strip() if result.returncode == 0 else ""


def _stop(process):
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _die_with_parent():
    """In the daemon, before exec: SIGTERM when the test process dies, even by SIGKILL."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def start_cluster(state):
    """Write the config, start both daemons and wait until the node is idle.

    A generator for a pytest fixture: yields the `Cluster` (state and logs
    under the folder `state`), then cancels what is left, stops the daemons
    and removes our config.
    """
    reason = missing()
    if reason:
        pytest.skip(reason)
    lock = open(LOCK, "w")  # noqa: SIM115 (held for the whole session)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        pytest.skip("another test session is running the test Slurm cluster on this machine")
    try:
        yield from _run_cluster(Path(state))
    finally:
        lock.close()


def _run_cluster(state):
    (state / "ctld").mkdir(parents=True)
    (state / "d").mkdir()
    cluster = Cluster(state, os.cpu_count() or 1, node_memory_mb())
    values = {
        "mark": MARK,
        "node": NODE,
        "partition": PARTITION,
        "min_job_age": MIN_JOB_AGE,
        "state": state,
        "cpus": cluster.cpus,
        "memory": cluster.memory_mb,
    }
    CONF_DIR.mkdir(parents=True, exist_ok=True)
    files = {CONF_DIR / "slurm.conf": SLURM_CONF, CONF_DIR / "gres.conf": GRES_CONF}
    for path in files:
        if path.exists() and not path.read_text(errors="replace").startswith(MARK):
            pytest.skip(f"{path} belongs to another Slurm cluster; not touching it")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    daemons = []
    errors = {name: open(state / f"{name}.err", "w") for name in ("slurmctld", "slurmd")}  # noqa: SIM115
    try:
        for path, template in files.items():
            path.write_text(template.format(**values))
        # -D: stay in the foreground (children of this process); -i: ignore
        # any stale state; -N: the node name when the host's name is another.
        daemons.append(
            subprocess.Popen(
                ["slurmctld", "-D", "-i"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=errors["slurmctld"],
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        )
        daemons.append(
            subprocess.Popen(
                ["slurmd", "-D", "-N", NODE],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=errors["slurmd"],
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        status = ""
        while time.monotonic() < deadline:
            for daemon, name in zip(daemons, ("slurmctld", "slurmd")):
                if daemon.poll() is not None:
                    raise RuntimeError(f"{name} exited with {daemon.returncode}:\n{_logs(state)}")
            status = _sinfo_state()
            if status == "idle":
                break
            time.sleep(0.5)
        else:
            raise RuntimeError(f"node {NODE} not idle after {STARTUP_TIMEOUT}s (sinfo: {status!r}):\n{_logs(state)}")
        yield cluster
    finally:
        # Leftover jobs (an interrupted test) go first, so no slurmstepd outlives the daemons.
        if daemons and daemons[0].poll() is None:
            subprocess.run(
                ["scancel", "--full", "--partition", PARTITION], check=False, capture_output=True, timeout=30
            )
            time.sleep(1)
        for daemon in reversed(daemons):
            _stop(daemon)
        for file in errors.values():
            file.close()
        for path in files:
            if path.exists() and path.read_text(errors="replace").startswith(MARK):
                path.unlink()
        # The logs stay in `state` (pytest's temporary folder) to read after a failure.


def _logs(state, lines=40):
    parts = []
    for name in ("slurmctld.err", "slurmctld.log", "slurmd.err", "slurmd.log"):
        path = Path(state) / name
        if path.exists():
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {path} ---\n" + "\n".join(tail))
    return "\n".join(parts)
