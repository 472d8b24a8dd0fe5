"""Look models up by the short names the CLI and config files use, in Linen or NNX."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flax import linen as nn

from flaxfit.models import nnx as nnx_models
from flaxfit.models.mnist import MLP, DoubleLayerCNN, SingleLayerCNN, SoftmaxRegression

MODELS: dict[str, Callable[..., nn.Module]] = {
    "softmax": SoftmaxRegression,
    "cnn1": SingleLayerCNN,
    "cnn2": DoubleLayerCNN,
    "mlp": MLP,
}
#: The same models in Flax NNX (`flaxfit.models.nnx`): same layers, same parameter paths.
NNX_MODELS: dict[str, Callable[..., Any]] = {
    "softmax": nnx_models.SoftmaxRegression,
    "cnn1": nnx_models.SingleLayerCNN,
    "cnn2": nnx_models.DoubleLayerCNN,
    "mlp": nnx_models.MLP,
}
APIS = ("linen", "nnx")


def create_model(name: str, *, api: str = "linen", seed: int = 0, **kwargs: Any) -> Any:
    """Build a registered model by name ("softmax", "cnn1", "cnn2", "mlp").

    Args:
        name: the registry name.
        api: "linen" (a `flax.linen` module, initialised later by `create_train_state`)
            or "nnx" (an `nnx.Module`, initialised now from `nnx.Rngs(seed)`).
        seed: the NNX module's initialisation seed (Linen ignores it).
        **kwargs: the model's options, e.g. `dtype=jnp.bfloat16`.

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

        return factory(rngs=nnx.Rngs(seed), **kwargs)
    return factory(**kwargs)
