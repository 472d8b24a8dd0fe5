"""Look models up by the short names the CLI and config files use."""

from __future__ import annotations

from collections.abc import Callable

from flax import linen as nn

from flaxfit.models.mnist import MLP, DoubleLayerCNN, SingleLayerCNN, SoftmaxRegression

MODELS: dict[str, Callable[..., nn.Module]] = {
    "softmax": SoftmaxRegression,
    "cnn1": SingleLayerCNN,
    "cnn2": DoubleLayerCNN,
    "mlp": MLP,
}


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model by name ("softmax", "cnn1", "cnn2", "mlp").

    Raises:
        ValueError: for an unknown name, listing the valid ones.
    """
    try:
        factory = MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}") from None
    return factory(**kwargs)
