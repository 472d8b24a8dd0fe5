"""Run any model's convolutions and pools the way flaxfit's own layers do: fast inside a scan.

XLA:CPU runs convolution and reduce-window gradients inside `lax.scan` far
slower than at top level (jax issue 12868), and `fit()` runs its steps inside
a scan. flaxfit's own layers dodge this by computing a conv as shifted slices
+ one matmul and a pool as reshape + max (models/_layers.py). A model written
with stock `nn.Conv` / `nn.max_pool` / `nnx.Conv` / `nnx.avg_pool` gets the
same forms here, without changing a line of it: the function is traced to a
jaxpr, and that jaxpr is evaluated again, before any differentiation, with

- `conv_general_dilated` (no lhs/rhs dilation, one feature and batch group;
  any padding, strides, layout, dtypes) on CPU only, by pad + stacked shifted
  slices + one 2-D matmul (`conv_matmul`), so no conv appears in a gradient.
  GPU/TPU keep their native conv;
- `reduce_window_max` / `_min` / `_sum` (what max_pool / min_pool / avg_pool
  lower to) whose window equals its strides, unpadded, undilated, dividing
  every dimension exactly, as reshape + max / min / sum, on every backend
  (max_pool's gradient is a select-and-scatter, which XLA:GPU cannot run
  deterministically);

and every other equation bound again unchanged. Nested `jit` / `closed_call`
/ `core_call` jaxprs are inlined and rewritten (so convs inside `jnp` helpers
are found), `checkpoint` (remat) bodies are rewritten under `jax.checkpoint`
with their policy; `custom_jvp` / `custom_vjp` calls and every control-flow
primitive (scan, while, cond) are bound as they are, so a conv or pool inside
them stays native.

The results are the same function, equal up to float rounding (sums run in
another order; an undifferentiated conv is the native op itself), with one
difference: where several inputs of a max-pool
window tie for the maximum, the gradient is shared between them instead of
going to the first (after a relu that happens only at zeros, whose gradient
the relu discards anyway).

Costs: tracing the function twice (once to a jaxpr, once through the
interpreter) at every trace, which is once per compile under `jit`; in
training, each conv's patches (kernel-size times its input's memory) are kept
for the kernel's gradient.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend.core import ClosedJaxpr, Jaxpr, JaxprEqn, Literal

from flaxfit.models._layers import resolve_impl

#: Calls whose jaxpr is inlined and rewritten: they only name a sub-computation.
INLINED_CALLS = frozenset({"jit", "pjit", "closed_call", "core_call"})
#: jax.checkpoint's primitive, by the names JAX versions have given it.
REMAT_CALLS = frozenset({"checkpoint", "remat", "remat2"})
POOL_REDUCERS = {
    "reduce_window_max": lax.reduce_max,
    "reduce_window_min": lax.reduce_min,
    "reduce_window_sum": lax.reduce_sum,
}

F = TypeVar("F", bound=Callable[..., Any])
Rule = Callable[[JaxprEqn, list[Any]], Any]


# --- the rewrites, one equation at a time --------------------------------------------------------


def _conv_output_window(params: dict, lhs_shape: tuple, rhs_shape: tuple) -> tuple | None:
    """The conv's output spatial shape where the matmul form applies to it, else None."""
    dilated = any(d != 1 for d in (*params["lhs_dilation"], *params["rhs_dilation"]))
    if dilated or params["feature_group_count"] != 1 or params["batch_group_count"] != 1:
        return None
    lhs_spec, rhs_spec, _ = params["dimension_numbers"]
    spatial = [
        lhs_shape[d] + lo + hi for d, (lo, hi) in zip(lhs_spec[2:], params["padding"], strict=True)
    ]
    window = [rhs_shape[d] for d in rhs_spec[2:]]
    strides = params["window_strides"]
    out = tuple((n - k) // s + 1 for n, k, s in zip(spatial, window, strides, strict=True))
    if min(out, default=1) <= 0 or min(window, default=1) <= 0:
        return None
    return out


def conv_matmul(lhs: jax.Array, rhs: jax.Array, **params: Any) -> jax.Array:
    """`lax.conv_general_dilated_p.bind(lhs, rhs, **params)` as pad + shifted slices + one matmul.

    For params where `_conv_output_window` is not None: no lhs/rhs dilation, one
    feature and batch group; any padding (negative crops), strides,
    dimension_numbers, precision and preferred_element_type, any number of
    spatial dimensions.
    """
    out = _conv_output_window(params, lhs.shape, rhs.shape)
    assert out is not None, "conv_matmul called for a conv it does not cover"
    lhs_spec, rhs_spec, out_spec = params["dimension_numbers"]
    # Channels-last working layout: lhs (N, *spatial, C), rhs (*spatial, C, O).
    x = lax.transpose(lhs, (lhs_spec[0], *lhs_spec[2:], lhs_spec[1]))
    kernel = lax.transpose(rhs, (*rhs_spec[2:], rhs_spec[1], rhs_spec[0]))
    window, strides = kernel.shape[:-2], tuple(params["window_strides"])
    pads = [(0, 0, 0), *((lo, hi, 0) for lo, hi in params["padding"]), (0, 0, 0)]
    x = lax.pad(x, jnp.zeros((), x.dtype), pads)  # negative padding crops, as in the conv

    # One strided slice per kernel tap, stacked (N, *out, taps, C): a single large GEMM is
    # what the CPU runs fastest, and the slices' gradients are pads that stay fast in a scan.
    # The patches cost taps times the input's memory.
    def tap(offset: tuple[int, ...]) -> jax.Array:
        last = (o + (n - 1) * s + 1 for o, n, s in zip(offset, out, strides, strict=True))
        return lax.slice(x, (0, *offset, 0), (x.shape[0], *last, x.shape[-1]), (1, *strides, 1))

    taps = [tap(offset) for offset in itertools.product(*(range(k) for k in window))]
    patches = jnp.stack(taps, axis=-2)
    cin, cout = kernel.shape[-2:]
    depth = len(taps) * cin
    # A 2-D operand: XLA:CPU ran the same product as a 4-D dot_general 2x slower.
    y = lax.dot_general(
        patches.reshape(-1, depth),
        kernel.reshape(depth, cout),
        (((1,), (0,)), ((), ())),
        precision=params["precision"],
        preferred_element_type=params["preferred_element_type"],
    )
    y = y.reshape(x.shape[0], *out, cout)
    perm = [0] * y.ndim
    perm[out_spec[0]], perm[out_spec[1]] = 0, y.ndim - 1
    for i, axis in enumerate(out_spec[2:]):
        perm[axis] = 1 + i
    dtype = params["preferred_element_type"] or lhs.dtype
    return lax.transpose(y, tuple(perm)).astype(dtype)


def conv_with_matmul_derivatives(eqn: JaxprEqn, invals: list[Any]) -> jax.Array | None:
    """The conv as `conv_matmul` (slices + one matmul, differentiated by plain autodiff
    into pads and matmuls, the forms XLA:CPU runs fast inside a scan); None (native)
    where that does not apply.

    Measured against keeping the native value behind a custom_jvp with matmul
    derivatives (which also keeps evaluation on the native conv): 2.1 against 3.3 s
    for an epoch of 6 400 images of the deck's slide-13 model in fit(), 3.1-3.4
    against 4.1-4.3 s for Flax's examples CNN (2-core Xeon, two runs each,
    interleaved). The price is evaluation: the matmul form computed a 1000-image
    batch 2.3x slower than the native conv, once per epoch.
    """
    params = eqn.params
    lhs, rhs = invals
    if _conv_output_window(params, lhs.shape, rhs.shape) is None:
        return None
    return conv_matmul(lhs, rhs, **params)


def pool_as_reshape(eqn: JaxprEqn, invals: list[Any]) -> jax.Array | None:
    """`reduce_window_{max,min,sum}` with window == strides, unpadded, as reshape + reduce.

    None (keep the native op) for padding, dilation, overlapping or gapped windows,
    or a dimension the window does not divide exactly.
    """
    p = eqn.params
    (x,) = invals
    window = tuple(p["window_dimensions"])
    if (
        window != tuple(p["window_strides"])
        or any(lo or hi for lo, hi in p["padding"])
        or any(d != 1 for d in (*p["base_dilation"], *p["window_dilation"]))
        or any(n % w for n, w in zip(x.shape, window, strict=True))
    ):
        return None
    shape: list[int] = []
    axes: list[int] = []
    for n, w in zip(x.shape, window, strict=True):
        if w == 1:
            shape.append(n)
        else:
            shape += [n // w, w]
            axes.append(len(shape) - 1)
    return POOL_REDUCERS[eqn.primitive.name](x.reshape(shape), tuple(axes))


def rules_for(*, conv: bool | None = None, pool: bool = True) -> dict[str, Rule]:
    """The rewrites by primitive name: conv on CPU only unless `conv` says, pools always."""
    if conv is None:
        conv = resolve_impl("auto") == "matmul"  # the choice flaxfit's own Conv makes
    rules: dict[str, Rule] = {}
    if conv:
        rules["conv_general_dilated"] = conv_with_matmul_derivatives
    if pool:
        rules.update(dict.fromkeys(POOL_REDUCERS, pool_as_reshape))
    return rules


# --- the interpreter ----------------------------------------------------------------------------


def eval_rewritten(jaxpr: Jaxpr, consts: Sequence[Any], args: Sequence[Any], rules: dict) -> list:
    """Evaluate `jaxpr` like `jax.core.eval_jaxpr`, through `rules` where one applies."""
    env: dict[Any, Any] = {}

    def read(v: Any) -> Any:
        return v.val if isinstance(v, Literal) else env[v]

    env.update(zip(jaxpr.constvars, consts, strict=True))
    env.update(zip(jaxpr.invars, args, strict=True))
    for eqn in jaxpr.eqns:
        with eqn.ctx.manager:
            outvals = _eval_equation(eqn, [read(v) for v in eqn.invars], rules)
        for v, val in zip(eqn.outvars, outvals, strict=True):
            env[v] = val  # a DropVar is written and never read
    return [read(v) for v in jaxpr.outvars]


def _eval_equation(eqn: JaxprEqn, invals: list[Any], rules: dict) -> list[Any]:
    name = eqn.primitive.name
    if name in rules:
        out = rules[name](eqn, invals)
        if out is not None:
            return [out]
    elif name in INLINED_CALLS:
        inner = eqn.params.get("jaxpr", eqn.params.get("call_jaxpr"))
        if isinstance(inner, ClosedJaxpr):
            return eval_rewritten(inner.jaxpr, inner.consts, invals, rules)
        return eval_rewritten(inner, (), invals, rules)
    elif name in REMAT_CALLS and not eqn.params.get("differentiated", False):
        body = functools.partial(eval_rewritten, eqn.params["jaxpr"], (), rules=rules)
        return jax.checkpoint(
            lambda *xs: body(xs),
            prevent_cse=eqn.params["prevent_cse"],
            policy=eqn.params["policy"],
        )(*invals)
    out = eqn.primitive.bind(*invals, **eqn.primitive.get_bind_params(eqn.params))
    return out if eqn.primitive.multiple_results else [out]


def rewrite(fn: F, *, conv: bool | None = None, pool: bool = True) -> F:
    """`fn` computed with its convolutions and pools in their scan-friendly forms.

    Args:
        fn: any function of pytrees of arrays (Python scalars are traced too;
            close over anything that must stay static).
        conv: rewrite convolutions; None (default): on CPU only, as flaxfit's Conv does.
        pool: rewrite non-overlapping, unpadded max/min/avg pools (default: always).

    Returns:
        A function with `fn`'s signature returning the same pytree. Which rewrites
        apply is decided when it is traced, from `jax.default_backend()`.
    """

    @functools.wraps(fn)
    def rewritten(*args: Any) -> Any:
        closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(*args)
        rules = rules_for(conv=conv, pool=pool)
        flat = eval_rewritten(closed.jaxpr, closed.consts, jax.tree.leaves(args), rules)
        return jax.tree.unflatten(jax.tree.structure(out_shape), flat)

    return rewritten  # type: ignore[return-value]


# --- Linen: a drop-in `apply` --------------------------------------------------------------------


def _is_array(x: Any) -> bool:
    return isinstance(x, jax.Array | np.ndarray | np.generic)


def _split_static(tree: Any) -> tuple[list[Any], Callable[[list[Any]], Any]]:
    """Arrays of `tree` (to trace) and a function putting traced ones back among the static rest.

    `mutable=['batch_stats']`, `train=True`, `get_logits=True` stay Python values, as
    the original `apply` sees them; `rngs={'dropout': key}` and inputs are traced.
    """
    leaves, treedef = jax.tree.flatten(tree)
    where = [i for i, leaf in enumerate(leaves) if _is_array(leaf)]

    def rebuild(arrays: list[Any]) -> Any:
        full = list(leaves)
        for i, array in zip(where, arrays, strict=True):
            full[i] = array
        return jax.tree.unflatten(treedef, full)

    return [leaves[i] for i in where], rebuild


def _call_rewritten(fn: Callable[..., Any], args: tuple, kwargs: dict, **options: Any) -> Any:
    arrays, rebuild = _split_static((args, kwargs))

    def traced(arrays: list[Any]) -> Any:
        args, kwargs = rebuild(arrays)
        return fn(*args, **kwargs)

    return rewrite(traced, **options)(arrays)


@dataclasses.dataclass(frozen=True)
class FastApply:
    """`apply_fn` computed through `rewrite`; hashable and equal per wrapped function.

    Made by `fast_apply`; a static field of `TrainState`, so two wrappers of one
    `model.apply` must hash and compare equal, or every step would recompile.
    """

    apply_fn: Callable[..., Any]
    conv: bool | None = None
    pool: bool = True

    def __call__(self, variables: Any, *args: Any, **kwargs: Any) -> Any:
        return _call_rewritten(
            self.apply_fn, (variables, *args), kwargs, conv=self.conv, pool=self.pool
        )

    @property
    def __wrapped__(self) -> Callable[..., Any]:
        # inspect.signature and takes_get_logits look through to the model's own apply.
        return self.apply_fn


def fast_apply(
    apply_fn: Callable[..., Any],
    *,
    enabled: bool = True,
    conv: bool | None = None,
    pool: bool = True,
) -> Callable[..., Any]:
    """A Linen `model.apply` whose convs and pools run in their scan-friendly forms.

    Call it exactly as `apply_fn`: `fast(variables, x, train=True, mutable=['batch_stats'],
    rngs={'dropout': key})` returns what `apply_fn` returns. Arrays (also inside
    `rngs`) are traced; every other argument (`mutable`, `get_logits`, `train`,
    Python numbers) is passed through as the static value it is.

    Args:
        apply_fn: `model.apply`, e.g. `state.apply_fn`.
        enabled: False returns `apply_fn` itself, untouched (the switch for fit()).
        conv: rewrite convolutions; None (default): on CPU only.
        pool: rewrite non-overlapping, unpadded pools (default: on every backend).

    Returns:
        A hashable callable; `fast_apply(f) == fast_apply(f)`. Wrapping a wrapper
        returns it unchanged.
    """
    if not enabled or isinstance(apply_fn, FastApply):
        return apply_fn
    return FastApply(apply_fn, conv=conv, pool=pool)


# --- NNX: a module whose forward runs through the rewrite -----------------------------------------


def _same_leaves(a: Any, b: Any) -> bool:
    if b is None:
        return False
    left, right = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(left) == len(right) and all(x is y for x, y in zip(left, right, strict=True))


@functools.cache
def _fast_subclass(cls: type) -> type:
    """A subclass of the nnx.Module class `cls` whose `__call__` runs through `rewrite`.

    Cached, so every `fast_module` of one class gives the same type (an nnx graphdef
    records the type; a new one each time would make nnx.jit recompile).
    """
    from flax import nnx  # here, not at the top: Linen-only users skip nnx's import

    def __call__(self: Any, *args: Any, **kwargs: Any) -> Any:
        graphdef, state = nnx.split(self)

        def forward(state: Any, *args: Any, **kwargs: Any) -> Any:
            module = nnx.merge(graphdef, state)  # of the fast class: call the original's method
            out = cls.__call__(module, *args, **kwargs)
            return out, nnx.state(module)

        out, new_state = _call_rewritten(forward, (state, *args), kwargs)
        # Write back only what the call changed (BatchNorm's running stats, Dropout's RNG
        # counts): an unchanged value comes back as the very array passed in, and writing
        # a Param from another trace level is an error nnx raises where the call wrote none.
        before = dict(nnx.to_flat_state(state))
        changed = [
            (path, variable)
            for path, variable in nnx.to_flat_state(new_state)
            if not _same_leaves(variable, before.get(path))
        ]
        if changed:
            nnx.update(self, nnx.from_flat_state(changed))
        return out

    namespace = {"__call__": __call__, "__module__": cls.__module__,
                 "__qualname__": cls.__qualname__, "_fast_ops_original": cls}  # fmt: skip
    return type(cls.__name__, (cls,), namespace)


@contextlib.contextmanager
def fast_module(module: Any) -> Iterator[Any]:
    """Within the block, `module(...)` runs its convs and pools in their scan-friendly forms.

    For an `nnx.Module` trained by your own step, e.g. the Flax NNX MNIST tutorial's
    `@nnx.jit def train_step(model, optimizer, metrics, batch)`:

        with fast_module(model):
            for batch in batches:
                train_step(model, optimizer, metrics, batch)

    The module's class is swapped for a cached subclass whose `__call__` splits the
    module, runs `merge -> __call__ -> nnx.state` through `rewrite`, and writes the
    new state back (`nnx.update`), so BatchNorm stats and RNG counts update as
    before. Its class is restored on leaving the block. Only the top-level
    `__call__` is rewritten (it covers every submodule it calls); other methods
    run as they are.

    Args:
        module: an `nnx.Module` instance.

    Yields:
        The same module.
    """
    original = type(module)
    if "_fast_ops_original" in vars(original):  # already inside a fast_module block
        yield module
        return
    # object.__setattr__: nnx's own would record `__class__` as an attribute of the module
    # and refuse the swap from inside a trace; only the type changes, no value.
    object.__setattr__(module, "__class__", _fast_subclass(original))
    try:
        yield module
    finally:
        object.__setattr__(module, "__class__", original)
