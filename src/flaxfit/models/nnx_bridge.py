"""NNX modules behind Linen's `apply(variables, x)`, so every flaxfit stage treats them alike.

An `nnx.Module` holds its weights inside the object; Linen keeps them in a
dict passed to `apply`. flaxfit keeps every run's weights as plain nested
dicts (checkpoints, params surgery, export all read them), so an NNX module
is split once into its structure (a GraphDef), its `nnx.Param`s and its
`nnx.BatchStat`s as plain dicts, and `NnxApply` merges them back on every
call. Inside `jit` the merge is Python bookkeeping only: the compiled program
is the same as the module's own call.

    apply, params, batch_stats = split_module(model)
    logits = apply({"params": params}, x)
    model = merge_module(apply, params, batch_stats)  # an nnx.Module again
"""

from __future__ import annotations

from typing import Any

import jax
from flax import nnx

#: What the two plain dicts hold; every other variable (RNG streams, custom
#: nnx.Variables) keeps the value it had when the module was split.
PARAMS, BATCH_STATS = nnx.Param, nnx.BatchStat


def _to_dict(state: nnx.State) -> dict[str, Any]:
    """nnx.State -> nested dict with str keys (list indices become "0", "1", ...)."""
    out: dict[str, Any] = {}
    for path, variable in nnx.to_flat_state(state):
        node = out
        for key in path[:-1]:
            node = node.setdefault(str(key), {})
        node[str(path[-1])] = variable.get_value() if hasattr(variable, "get_value") else variable
    return out


def _from_dict(template: nnx.State, values: Any, what: str) -> nnx.State:
    """`template` with every variable's value taken from the nested dict `values`."""
    flat = []
    for path, variable in nnx.to_flat_state(template):
        node = values
        try:
            for key in path:
                node = node[str(key)]
        except (KeyError, TypeError):
            name = "/".join(str(k) for k in path)
            raise KeyError(f"{what} has no entry {name!r} that the NNX module needs") from None
        flat.append((path, variable.replace(node)))
    return nnx.from_flat_state(flat)


def _streams(module: nnx.Module) -> list[str]:
    """The tags of the module's RNG streams ("dropout", "default", ...), sorted."""
    return sorted(
        {node.tag for _, node in nnx.iter_graph(module) if isinstance(node, nnx.RngStream)}
    )


class NnxApply:
    """Calls an NNX module as Linen's `model.apply(variables, x, ...)` does.

    `variables` is `{"params": dict}` plus, for modules with BatchNorm,
    `"batch_stats": dict` (the values from the split are used when absent).

    Keywords flaxfit's steps pass (every other keyword goes to the module's `__call__`):
        train: True puts the module in training mode (`module.train()`: dropout
            on, BatchNorm using and updating batch statistics), False in
            evaluation mode; None leaves the mode the module was split in.
        rngs: `{"dropout": key}`: reseeds every RNG stream of the module from
            `key` for this call, so each step's randomness is a function of
            the key alone (exact resume) rather than of a counter in the module.
        mutable: truthy -> return `(output, {"batch_stats": new dict})`, as Linen does.
    """

    def __init__(self, module: nnx.Module):
        self.graphdef, params, stats, self._rest = nnx.split(module, PARAMS, BATCH_STATS, ...)
        self._templates = (params, stats)
        self.module_type = type(module)
        self.streams = _streams(module)
        self.has_batch_stats = bool(jax.tree.leaves(stats))

    def merge(self, params: Any, batch_stats: Any = None) -> nnx.Module:
        """A new module of the split's structure holding `params` (and `batch_stats`)."""
        params_template, stats_template = self._templates
        stats = stats_template if batch_stats is None else _from_dict(stats_template, batch_stats,
                                                                      "batch_stats")  # fmt: skip
        # copy=True: fresh Variables, created in the caller's trace (jit, grad), which
        # may then be mutated there (BatchNorm statistics, RNG counters).
        return nnx.merge(self.graphdef, _from_dict(params_template, params, "params"), stats,
                         self._rest, copy=True)  # fmt: skip

    def __call__(
        self,
        variables: dict[str, Any],
        *args: Any,
        train: bool | None = None,
        rngs: dict[str, jax.Array] | None = None,
        mutable: Any = False,
        **kwargs: Any,
    ) -> Any:
        module = self.merge(variables["params"], variables.get("batch_stats"))
        if train is True:
            module.train()
        elif train is False:
            module.eval()
        if rngs and self.streams:
            key = next(iter(rngs.values())) if len(rngs) == 1 else rngs.get("dropout")
            if key is not None:
                nnx.reseed(module, **{
                    tag: jax.random.fold_in(key, i) for i, tag in enumerate(self.streams)
                })  # fmt: skip
        out = module(*args, **kwargs)
        if mutable:
            return out, {"batch_stats": _to_dict(nnx.state(module, BATCH_STATS))}
        return out

    def __repr__(self) -> str:
        return f"NnxApply({self.module_type.__name__})"


def split_module(module: nnx.Module) -> tuple[NnxApply, dict[str, Any], dict[str, Any] | None]:
    """`module` as (apply function, params dict, batch_stats dict or None when it has none)."""
    apply = NnxApply(module)
    params, stats = apply._templates
    return apply, _to_dict(params), (_to_dict(stats) if apply.has_batch_stats else None)


def merge_module(apply: NnxApply, params: Any, batch_stats: Any = None) -> nnx.Module:
    """The NNX module of `apply`'s structure holding `params` (e.g. a trained state's)."""
    return apply.merge(params, batch_stats)


def is_nnx(model: Any) -> bool:
    """Whether `model` is an NNX module (rather than a Linen one)."""
    return isinstance(model, nnx.Module)
