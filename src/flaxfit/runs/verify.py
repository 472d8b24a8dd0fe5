"""verify_resume: prove that stopping, restoring in a new process and continuing is bit-exact.

It trains the same config twice with the `flaxfit train` command: once
without a break, and once stopped after `stop_after` epochs and continued by
a second, fresh process. Then it compares the two final checkpoints part by
part, in the order a divergence would spread: the RNG key, the data order
of every epoch, the optimizer state, the params, and the per-epoch metrics.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np

from flaxfit.runs.checkpoints import CHECKPOINTS_DIR, restore
from flaxfit.runs.config import TrainConfig
from flaxfit.runs.optim import make_optimizer
from flaxfit.training.step import create_train_state


def _measured(row: dict[str, float]) -> dict[str, float]:
    """A history row without its timings (which differ from run to run)."""
    return {k: v for k, v in row.items() if k not in ("seconds", "images_per_second")}


@dataclass(frozen=True)
class PartCheck:
    """One compared part: its name, whether it matched, and a detail line."""

    part: str
    identical: bool
    detail: str


@dataclass(frozen=True)
class ResumeReport:
    """What `verify_resume` compared: one `PartCheck` per part; `bit_exact` when all matched."""

    checks: tuple[PartCheck, ...]

    @property
    def bit_exact(self) -> bool:
        return all(check.identical for check in self.checks)

    @property
    def first_divergence(self) -> PartCheck | None:
        return next((check for check in self.checks if not check.identical), None)

    def format(self) -> str:
        lines = [f"  {c.part:<16} {'identical' if c.identical else 'DIFFERS':<9}  {c.detail}"
                 for c in self.checks]  # fmt: skip
        if self.bit_exact:
            lines.append("resume is bit-exact: yes")
        else:
            lines.append(f"resume is bit-exact: no; first divergence: {self.first_divergence.part}")
        return "\n".join(lines)


def _train(config_file: Path, out: Path, *extra: str) -> None:
    command = [sys.executable, "-m", "flaxfit", "train", "--config", str(config_file),
               "--out", str(out), "--quiet", *extra]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise ValueError(f"{shlex.join(command)} failed with exit code {result.returncode}: "
                         f"{result.stderr.strip().splitlines()[-1:]}")  # fmt: skip


def _compare_trees(a, b) -> tuple[bool, str]:
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    if jax.tree.structure(a) != jax.tree.structure(b):
        return False, "different structure"
    differing = [i for i, (x, y) in enumerate(zip(leaves_a, leaves_b, strict=True))
                 if not np.array_equal(np.asarray(x), np.asarray(y))]  # fmt: skip
    values = sum(int(np.size(x)) for x in leaves_a)
    if differing:
        return False, f"{len(differing)} of {len(leaves_a)} arrays differ"
    return True, f"{len(leaves_a)} arrays, {values:,} values"


def compare_runs(full: Path, resumed: Path, config: TrainConfig) -> ResumeReport:
    """Compare the latest checkpoints of two runs of `config`, part by part."""
    # Only the structure matters here: the schedule's length does not change it.
    template = create_train_state(
        config.make_model(), jax.random.key(config.seed), make_optimizer(config, 1)
    )
    a = restore(full / CHECKPOINTS_DIR, template)
    b = restore(resumed / CHECKPOINTS_DIR, template)
    checks = [
        PartCheck("rng key", a.meta["rng_key"] == b.meta["rng_key"], f"seed {a.meta['seed']}"),
        PartCheck(
            "data order",
            a.meta["order_sha256"] == b.meta["order_sha256"],
            f"{len(a.meta['order_sha256'])} epochs, sha256 of each epoch's order",
        ),
        PartCheck("optimizer state", *_compare_trees(a.state.opt_state, b.state.opt_state)),
        PartCheck("params", *_compare_trees(a.state.params, b.state.params)),
    ]
    rows_a = [_measured(r) for r in a.history.rows]
    rows_b = [_measured(r) for r in b.history.rows]
    checks.append(
        PartCheck("metrics", rows_a == rows_b, f"{len(rows_a)} epochs of loss and accuracy")
    )
    checks.append(PartCheck("step", int(a.state.step) == int(b.state.step), f"{int(a.state.step)}"))
    return ResumeReport(tuple(checks))


def verify_resume(
    config: TrainConfig,
    *,
    stop_after: int = 1,
    work_dir: str | Path | None = None,
    compile_cache: bool = True,
) -> ResumeReport:
    """Train `config` unbroken and broken after `stop_after` epochs; compare bit for bit.

    The continuation runs in a new Python process, restoring only from the
    checkpoint on disk. Needs the data `config` names to be loadable. With
    `compile_cache` (as `flaxfit train` runs by default) the later processes read
    the programs the first one compiled, so the check covers the cache too.
    """
    if not 1 <= stop_after < config.epochs:
        raise ValueError(f"stop_after must be between 1 and epochs - 1 ({config.epochs - 1}), "
                         f"got {stop_after}")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="flaxfit-verify-") as scratch:
        root = Path(work_dir) if work_dir is not None else Path(scratch)
        root.mkdir(parents=True, exist_ok=True)
        config_file = root / "config.json"
        config_file.write_text(config.to_json())
        flags = () if compile_cache else ("--no-compile-cache",)
        _train(config_file, root / "full", *flags)
        _train(config_file, root / "resumed", "--stop-after-epoch", str(stop_after), *flags)
        _train(config_file, root / "resumed", *flags)  # a fresh process: restores from disk only
        return compare_runs(root / "full", root / "resumed", config)
