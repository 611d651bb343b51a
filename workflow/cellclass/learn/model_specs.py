"""What planning needs to know about each registry model, without importing TensorFlow.

The workflow checks model names and tile sizes while parsing the Snakefile;
cellclass.learn.models builds the networks.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelSpec:
    name: str
    min_size: int  # smallest tile side that builds
    optimizer: str  # default optimizer: "adam" or "sgd"
    description: str
    last_conv: str  # layer whose output Grad-CAM uses


MODELS = {
    spec.name: spec
    for spec in (
        # min_size: four valid 2x2 pools need 16 px (16 -> 8 -> 4 -> 2 -> 1).
        ModelSpec("deep", 16, "adam", "the article's DeepNetwork: 9 conv 3x3, 4 max-pools, Dense 512", "feature_map"),
        ModelSpec("deep50", 16, "adam", "the article's DeepNetwork with an extra Dense 50 (its best variant)", "feature_map"),
        # min_size: 67 -> conv1 15 -> pool 7 -> pool 3 -> pool 1; 66 leaves pool3 nothing.
        ModelSpec("alexnet", 67, "sgd", "the article's AlexNet clone with L2 5e-4, trained with SGD + momentum", "conv5"),
        # min_size: same-padded strided convs never shrink a map to zero.
        ModelSpec("resnet", 1, "adam", "small pre-activation ResNet (3 stages, ~0.7 M parameters), from scratch", "final_relu"),
        # min_size: two valid 2x2 pools need 4 px.
        ModelSpec("small", 4, "adam", "tiny 3-conv network for CPU demos and tests", "relu3"),
    )
}
