"""Snakemake executor for bench/dag.py: a job only creates its files (outputs, log, benchmark), empty.

It plugs in through Snakemake's public executor-plugin interface
(snakemake-interface-executor-plugins; found on PYTHONPATH by its name), so
Snakemake records each job's metadata exactly as after a real run, with no
patching of Snakemake's internals.
"""

import sys
from pathlib import Path

from snakemake_interface_executor_plugins.executors.base import SubmittedJobInfo
from snakemake_interface_executor_plugins.executors.real import RealExecutor
from snakemake_interface_executor_plugins.settings import CommonSettings, ExecMode

common_settings = CommonSettings(
    non_local_exec=False,
    implies_no_shared_fs=False,
    job_deploy_sources=False,
    pass_envvar_declarations_to_cmd=False,
    auto_deploy_default_storage_provider=False,
)


class Executor(RealExecutor):
    def run_job(self, job):
        # Outputs, plus the benchmark file Snakemake checks for and the log a job writes.
        for path in map(Path, [*job.output, *job.log, *([job.benchmark] if job.benchmark else [])]):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        info = SubmittedJobInfo(job=job)
        self.report_job_submission(info)
        self.report_job_success(info)

    @property
    def cores(self):
        return self.workflow.resource_settings.cores

    def get_exec_mode(self):
        return ExecMode.DEFAULT

    def get_python_executable(self):
        return sys.executable

    def cancel(self):
        pass

    def shutdown(self):
        pass
