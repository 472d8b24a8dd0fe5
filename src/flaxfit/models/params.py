"""Params are plain dicts: read, rewrite, transfer and freeze them by path.

Flax keeps a model's weights outside the model, in nested dicts. Here a path
joins the nested keys with '/': params["Conv_0"]["kernel"] is "Conv_0/kernel",
and a pattern is a shell-style glob over paths (`Conv_*/*`, `Dense_1/bias`)::

    from flaxfit.models import params as P
    P.get(state.params, "Conv_0/kernel")                    # (5, 5, 1, 16)
    edited = P.replace(state.params, "Conv_0/bias", zeros)  # shape and dtype checked
    warm, report = P.transfer(run_a.params, fresh_params, only=["Conv_0/*"])
    tx = P.freeze(optax.adam(1e-3), ["Conv_0/*"])            # those arrays never move

Every function returns new dicts and leaves its input as it was. `Lineage`
does the same while keeping a record of each edit, which `train_run` writes
into the run's manifest.
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np
import optax

SEPARATOR = "/"
TRAINABLE, FROZEN = "trainable", "frozen"


class ParamsError(ValueError):
    """A path that does not exist, a pattern that matches nothing, or a value of the wrong shape."""


def flatten(params: Mapping[str, Any]) -> dict[str, Any]:
    """{"Conv_0/kernel": array, ...} in sorted path order."""
    flat: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        for key in sorted(node):
            path = f"{prefix}{SEPARATOR}{key}" if prefix else str(key)
            if isinstance(node[key], Mapping):
                walk(node[key], path)
            else:
                flat[path] = node[key]

    walk(params, "")
    return flat


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """The nested dict of a {path: array} dict: the inverse of `flatten`."""
    params: dict[str, Any] = {}
    for path, value in flat.items():
        *parents, name = path.split(SEPARATOR)
        node = params
        for key in parents:
            node = node.setdefault(key, {})
        node[name] = value
    return params


def get(params: Mapping[str, Any], path: str) -> Any:
    """The array at `path`; ParamsError naming the paths there are if it does not exist."""
    flat = flatten(params)
    if path not in flat:
        raise ParamsError(f"no parameter {path!r}; the params have: {', '.join(flat)}")
    return flat[path]


def replace(params: Mapping[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of `params` with the array at `path` replaced by `value`.

    `value` must have the old array's shape and dtype: a silent cast or
    broadcast would train a different model than the one asked for.
    """
    old = get(params, path)
    new = np.asarray(value) if not isinstance(value, jax.Array) else value
    if tuple(new.shape) != tuple(old.shape) or new.dtype != old.dtype:
        raise ParamsError(
            f"{path}: expected {_spec(old)}, got {_spec(new)}"
            + (f"; cast it with .astype({old.dtype.name})" if new.shape == old.shape else "")
        )
    flat = flatten(params)
    flat[path] = new
    return unflatten(flat)


def _spec(array: Any) -> str:
    return f"{np.dtype(array.dtype).name}{list(array.shape)}"


def _matches(path: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(path, pattern) for pattern in patterns)


def select(params: Mapping[str, Any], *patterns: str) -> dict[str, Any]:
    """{path: array} for every path matching any of the glob `patterns`."""
    return {p: a for p, a in flatten(params).items() if _matches(p, patterns)}


def check_patterns(params: Mapping[str, Any], patterns: Iterable[str], what: str) -> None:
    """ParamsError if a pattern matches no path: a typo would otherwise do nothing, silently."""
    paths = list(flatten(params))
    for pattern in patterns:
        if not any(_matches(p, [pattern]) for p in paths):
            raise ParamsError(
                f"{what} pattern {pattern!r} matches no parameter; "
                f"the params are: {', '.join(paths)}"
            )


@dataclass(frozen=True)
class ParamInfo:
    """One array's path, shape, dtype, number of values and bytes."""

    path: str
    shape: tuple[int, ...]
    dtype: str
    count: int
    nbytes: int


def describe(params: Mapping[str, Any]) -> list[ParamInfo]:
    """A ParamInfo per array, in path order."""
    return [
        ParamInfo(
            path,
            tuple(a.shape),
            np.dtype(a.dtype).name,
            int(np.size(a)),
            int(np.size(a)) * np.dtype(a.dtype).itemsize,
        )  # fmt: skip
        for path, a in flatten(params).items()
    ]


def count(params: Mapping[str, Any]) -> int:
    """Total number of values (SingleLayerCNN: 3,222,954)."""
    return sum(info.count for info in describe(params))


def nbytes(params: Mapping[str, Any]) -> int:
    """Total bytes of all arrays."""
    return sum(info.nbytes for info in describe(params))


def statistics(array: Any) -> dict[str, float]:
    """mean, std, min, max, L2 norm and the fraction of exact zeros of one array."""
    x = np.asarray(array, dtype=np.float64)
    return {
        "mean": float(x.mean()), "std": float(x.std()), "min": float(x.min()),
        "max": float(x.max()), "norm": float(np.sqrt((x * x).sum())),
        "zeros": float((x == 0).mean()),
    }  # fmt: skip


def array_sha256(array: Any) -> str:
    """sha256 of one array's dtype, shape and bytes: equal exactly when the arrays are identical."""
    a = np.ascontiguousarray(np.asarray(array))
    digest = hashlib.sha256(f"{a.dtype.name}{list(a.shape)}".encode())
    digest.update(a.tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class TransferReport:
    """What `transfer` did with every path of the target."""

    matched: tuple[str, ...]
    not_selected: tuple[str, ...]
    missing: tuple[str, ...]  # selected, but the source has no such path
    mismatched: tuple[tuple[str, str, str], ...]  # (path, source spec, target spec)
    unused: tuple[str, ...]  # source paths the target does not have

    def format(self, separator: str = "\n") -> str:
        """One line per kind of outcome (or joined by `separator`)."""
        lines = [f"matched {len(self.matched)}: {', '.join(self.matched) or '-'}"]
        if self.mismatched:
            shown = ", ".join(f"{p} ({s} vs {t})" for p, s, t in self.mismatched)
            lines.append(f"different shape or dtype, kept fresh {len(self.mismatched)}: {shown}")
        if self.missing:
            lines.append(
                f"not in the source, kept fresh {len(self.missing)}: {', '.join(self.missing)}"
            )
        if self.not_selected:
            lines.append(
                f"not selected, kept fresh {len(self.not_selected)}: {', '.join(self.not_selected)}"
            )
        if self.unused:
            lines.append(f"in the source only, unused {len(self.unused)}: {', '.join(self.unused)}")
        return separator.join(lines)


def transfer(
    source: Mapping[str, Any],
    target: Mapping[str, Any],
    *,
    only: Iterable[str] = (),
    strict: bool = False,
) -> tuple[dict[str, Any], TransferReport]:
    """Copy arrays from `source` into `target` wherever the paths match.

    Args:
        source: params to take arrays from (e.g. a trained run's).
        target: params of the model being initialised; arrays not taken from
            `source` stay as they are here.
        only: glob patterns; when given, only target paths matching one are taken.
        strict: raise ParamsError unless every selected target path was taken
            (present in `source` with the same shape and dtype).

    Returns:
        The new params and a TransferReport of what matched and what did not.
    """
    only = tuple(only)
    check_patterns(target, only, "--only")
    src, dst = flatten(source), flatten(target)
    matched, not_selected, missing, mismatched = [], [], [], []
    for path, like in dst.items():
        if only and not _matches(path, only):
            not_selected.append(path)
        elif path not in src:
            missing.append(path)
        elif tuple(src[path].shape) != tuple(like.shape) or src[path].dtype != like.dtype:
            mismatched.append((path, _spec(src[path]), _spec(like)))
        else:
            matched.append(path)
            dst[path] = np.array(src[path])  # a copy: training must not alias the source
    report = TransferReport(tuple(matched), tuple(not_selected), tuple(missing),
                            tuple(mismatched), tuple(p for p in src if p not in dst))  # fmt: skip
    if strict and (missing or mismatched):
        raise ParamsError(f"strict transfer failed: {report.format('; ')}")
    return unflatten(dst), report


def freeze_labels(params: Mapping[str, Any], patterns: Iterable[str]) -> dict[str, Any]:
    """The params tree with "frozen" where a path matches a pattern and "trainable" elsewhere."""
    patterns = tuple(patterns)
    return unflatten({
        path: FROZEN if _matches(path, patterns) else TRAINABLE
        for path in flatten(params)
    })  # fmt: skip


def freeze(
    optimizer: optax.GradientTransformation, patterns: Iterable[str]
) -> optax.GradientTransformation:
    """`optimizer` for every array except those matching `patterns`, which get a zero update.

    The frozen arrays stay bit-identical through training. Their gradients are
    never used, so XLA drops the work of computing them.
    """
    patterns = tuple(patterns)
    return optax.multi_transform(
        {TRAINABLE: optimizer, FROZEN: optax.set_to_zero()},
        lambda params: freeze_labels(params, patterns),
    )


def _arrays_record(arrays: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"path": p, "shape": list(a.shape), "dtype": np.dtype(a.dtype).name,
             "sha256": array_sha256(a)} for p, a in arrays.items()]  # fmt: skip


@dataclass
class Lineage:
    """`replace` and `transfer` that also record what they did, for the run's manifest.

    Each record names the operation, the paths and shapes, and the sha256 of
    the arrays that came in, so a run can say exactly where its start came from.
    """

    records: list[dict[str, Any]] = field(default_factory=list)

    def replace(self, params: Mapping[str, Any], path: str, value: Any) -> dict[str, Any]:
        new = replace(params, path, value)
        before = get(params, path)
        self.records.append({"op": "replace", "sha256_before": array_sha256(before),
                             **_arrays_record({path: get(new, path)})[0]})  # fmt: skip
        return new

    def transfer(
        self,
        source: Mapping[str, Any],
        target: Mapping[str, Any],
        *,
        only: Iterable[str] = (),
        strict: bool = False,
        source_run: str | None = None,
    ) -> tuple[dict[str, Any], TransferReport]:
        only = tuple(only)
        new, report = transfer(source, target, only=only, strict=strict)
        src = flatten(source)
        self.records.append({
            "op": "transfer", "source_run": source_run, "only": list(only), "strict": strict,
            "arrays": _arrays_record({p: src[p] for p in report.matched}),
            "mismatched": [list(m) for m in report.mismatched], "missing": list(report.missing),
        })  # fmt: skip
        return new, report

    def freeze(self, params: Mapping[str, Any], patterns: Iterable[str]) -> None:
        """Record which arrays a frozen run keeps fixed, and their values at the start."""
        patterns = tuple(patterns)
        self.records.append({"op": "freeze", "patterns": list(patterns),
                             "arrays": _arrays_record(select(params, *patterns))})  # fmt: skip
