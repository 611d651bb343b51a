"""bench/gpu.py on a machine without a GPU: one line that says so, exit 0, nothing measured."""

import subprocess
import sys

import pytest

from conftest import REPO


def test_without_a_gpu_it_says_so_in_one_line_and_exits_0():
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("this machine has a GPU: bench/gpu.py would measure it")
    result = subprocess.run(
        [sys.executable, str(REPO / "bench/gpu.py")],
        capture_output=True,
        text=True,
        env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": ""},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "bench/gpu.py: no GPU visible to TensorFlow on this machine; nothing measured"
    ]
