"""Learn: stored tiles and a split in, trained Keras models out: the model registry, the input pipeline,
the training loop and its callbacks, the TensorFlow runtime settings and batched inference.
"""
