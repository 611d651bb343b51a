"""TensorFlow set-up shared by training, attribution and prediction jobs: threads, seeds, determinism, device."""

import logging
import os

log = logging.getLogger(__name__)


def configure_tensorflow(*, threads, seed, deterministic, mixed_precision=False, inter_op_threads=1):
    """Seed everything, pin CPU threads, pick the device; returns 'GPU' or 'CPU' for the log.

    `threads` run each op (intra-op); one op at a time (inter-op 1) by default, so a job stays within the cores
    it was given (a CNN's ops mostly wait on each other; bench/train.py --shares found no throughput difference
    either way on 2 cores).
    """
    import keras
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(inter_op_threads)
    except RuntimeError:  # TensorFlow already ran in this process (a notebook, a test session)
        log.info("TensorFlow is already initialised; keeping its thread settings")
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    if mixed_precision and gpus:
        keras.mixed_precision.set_global_policy("mixed_float16")
    # On a cluster the scheduler hands a job its GPU(s) through CUDA_VISIBLE_DEVICES
    # (Slurm's gres); TensorFlow then sees only those.
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    device = (
        f"GPU ({', '.join(g.name for g in gpus)}; CUDA_VISIBLE_DEVICES={visible})"
        if gpus
        else f"CPU ({threads} threads)"
    )
    log.info(
        "running on %s; deterministic=%s, mixed precision=%s", device, deterministic, bool(mixed_precision and gpus)
    )
    return device


def precision():
    """The compute precision Keras trains in now: 'float32', or 'mixed_float16' (float16 maths, float32 weights)."""
    import keras

    return keras.mixed_precision.global_policy().name


def xla_failure(model, compile_model, batch):
    """Why XLA cannot compile `model`'s training step here (None where it can): one step on a copy of the
    model, compiled by `compile_model(copy)` with jit_compile, on `batch` (tiles, one-hot labels)."""
    import keras

    probe = keras.models.clone_model(model)
    compile_model(probe)
    if not probe.jit_compile:  # Keras turns it off, with a warning, where it knows XLA would not do
        from tensorflow.python.framework.config import is_op_determinism_enabled

        if is_op_determinism_enabled():
            return "Keras does not use XLA while TensorFlow's op determinism is on (train.deterministic: true)"
        return "Keras does not use XLA for this model here"
    try:
        probe.train_on_batch(*batch)
    except Exception as error:  # XLA refuses in many types (InvalidArgument, Unimplemented, NotFound, ...)
        return f"{type(error).__name__}: {str(error).strip().splitlines()[0][:300]}"
    return None
