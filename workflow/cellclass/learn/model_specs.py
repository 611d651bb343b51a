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
    # A backbone model wraps this keras.applications network (nested as the layer "backbone"); None for ours.
    application: str | None = None
    # The ImageNet weights (include_top=False) as Keras caches them in ~/.keras/models/; the file `weights:` takes offline.
    weights_file: str | None = None


# The options of a backbone model (train.model_options.<model>); cellclass.learn.models documents them.
BACKBONE_OPTIONS = ("weights", "freeze_epochs", "dropout")


MODELS = {
    spec.name: spec
    for spec in (
        # min_size: four valid 2x2 pools need 16 px (16 -> 8 -> 4 -> 2 -> 1).
        ModelSpec("deep", 16, "adam", "the article's DeepNetwork: 9 conv 3x3, 4 max-pools, Dense 512", "feature_map"),
        ModelSpec(
            "deep50", 16, "adam", "the article's DeepNetwork with an extra Dense 50 (its best variant)", "feature_map"
        ),
        # min_size: 67 -> conv1 15 -> pool 7 -> pool 3 -> pool 1; 66 leaves pool3 nothing.
        ModelSpec(
            "alexnet", 67, "sgd", "the article's AlexNet clone with L2 5e-4, trained with SGD + momentum", "conv5"
        ),
        # min_size: same-padded strided convs never shrink a map to zero.
        ModelSpec(
            "resnet", 1, "adam", "small pre-activation ResNet (3 stages, ~0.7 M parameters), from scratch", "final_relu"
        ),
        # min_size: two valid 2x2 pools need 4 px.
        ModelSpec("small", 4, "adam", "tiny 3-conv network for CPU demos and tests", "relu3"),
        # Backbones: keras.applications networks at our tile size and channels, from scratch or ImageNet weights.
        # min_size: keras.applications refuses inputs under 32 px. Their last map is the input / 32
        # (2x2 at 64 px), so Grad-CAM is coarse unless tiles are resized up (prepare.resize_to).
        ModelSpec(
            "mobilenetv3small",
            32,
            "adam",
            "MobileNetV3Small backbone (0.9 M parameters): the fastest on CPU",
            "feature_map",
            "MobileNetV3Small",
            "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
        ),
        ModelSpec(
            "efficientnetv2b0",
            32,
            "adam",
            "EfficientNetV2B0 backbone (5.9 M parameters)",
            "feature_map",
            "EfficientNetV2B0",
            "efficientnetv2-b0_notop.h5",
        ),
        ModelSpec(
            "resnet50v2",
            32,
            "adam",
            "ResNet50V2 backbone (23.6 M parameters): the classic transfer-learning baseline",
            "feature_map",
            "ResNet50V2",
            "resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
        ),
    )
}


def weights_files(name, options):
    """The local weights file backbone model `name` loads, as a list: [its `weights` option] when that is a
    path, else [] (our own models; no weights; imagenet, which Keras downloads).

    The train rule declares it as an input and the config check wants it to exist before any job runs.
    """
    weights = (options or {}).get("weights")
    if MODELS[name].application is None or weights in (None, "imagenet"):
        return []
    return [str(weights)]
