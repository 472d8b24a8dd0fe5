"""Look models up by the short names the CLI and config files use, in Linen or NNX."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flax import linen as nn

from flaxfit.models import nnx as nnx_models
from flaxfit.models import resnet
from flaxfit.models.mnist import MLP, DoubleLayerCNN, SingleLayerCNN, SoftmaxRegression
from flaxfit.models.names import APIS as APIS

# Keyed by flaxfit.models.names.MODEL_NAMES, in its order (tests/test_models.py checks).
#: The built-in Linen models by the name `flaxfit train --model` takes: "softmax",
#: "cnn1" (the deck's SingleLayerCNN), "cnn2", "mlp", "resnet8", "resnet20".
MODELS: dict[str, Callable[..., nn.Module]] = {
    "softmax": SoftmaxRegression,
    "cnn1": SingleLayerCNN,
    "cnn2": DoubleLayerCNN,
    "mlp": MLP,
    "resnet8": resnet.ResNet8,
    "resnet20": resnet.ResNet20,
}
#: The same models in Flax NNX (`flaxfit.models.nnx`): same layers, same parameter paths.
NNX_MODELS: dict[str, Callable[..., Any]] = {
    "softmax": nnx_models.SoftmaxRegression,
    "cnn1": nnx_models.SingleLayerCNN,
    "cnn2": nnx_models.DoubleLayerCNN,
    "mlp": nnx_models.MLP,
    "resnet8": resnet.NnxResNet8,
    "resnet20": resnet.NnxResNet20,
}


def create_model(
    name: str,
    *,
    api: str = "linen",
    seed: int = 0,
    input_shape: tuple[int, ...] | None = None,
    **kwargs: Any,
) -> Any:
    """Build a registered model by name ("softmax", "cnn1", "cnn2", "mlp", "resnet8", "resnet20").

    Args:
        name: the registry name.
        api: "linen" (a `flax.linen` module, initialised later by `create_train_state`)
            or "nnx" (an `nnx.Module`, initialised now from `nnx.Rngs(seed)`).
        seed: the NNX module's initialisation seed (Linen ignores it).
        input_shape: one image's shape, (H, W) or (H, W, C); NNX layers need it when
            built (default MNIST's), Linen modules infer it from the first batch.
        **kwargs: the model's options, e.g. `num_classes=100`, `dtype=jnp.bfloat16`.

    Raises:
        ValueError: for an unknown name or api, listing the valid ones.
    """
    if api not in APIS:
        raise ValueError(f"unknown api {api!r}; choose one of: {', '.join(APIS)}")
    table = MODELS if api == "linen" else NNX_MODELS
    try:
        factory = table[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(table)}") from None
    if api == "nnx":
        from flax import nnx

        if input_shape is not None:
            kwargs["input_shape"] = tuple(input_shape)
        return factory(rngs=nnx.Rngs(seed), **kwargs)
    return factory(**kwargs)
