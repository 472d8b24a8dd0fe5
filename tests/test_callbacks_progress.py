"""ProgressBar: a bar only on a terminal; plain epoch lines everywhere else."""

import io
import re

import jax

from flaxfit.models import SoftmaxRegression
from flaxfit.training.callbacks import ProgressBar
from flaxfit.training.loop import fit
from flaxfit.training.step import create_train_state
from helpers import make_digits

TRAIN = make_digits(400, seed=0)
TEST = make_digits(100, seed=1)
# What a tqdm bar draws: its block characters, its rate, and the carriage return
# that redraws it in place.
BAR_MARKS = re.compile(r"[\r\u2580-\u259f]|step/s|s/step|it/s")


class LogFile(io.StringIO):
    """A stream like a log file or a CI pipe: says outright that it is not a terminal."""

    def isatty(self) -> bool:
        return False


def run_with(progress: ProgressBar, epochs: int = 3) -> None:
    state = create_train_state(SoftmaxRegression(), jax.random.key(0))
    # Five chunks per epoch, so a bar (if drawn) would be redrawn several times.
    fit(state, TRAIN, TEST, epochs=epochs, batch_size=40, steps_per_dispatch=2,
        callbacks=[progress], verbose=False)  # fmt: skip


def test_a_stream_that_is_not_a_terminal_gets_one_plain_line_per_epoch():
    out = LogFile()
    progress = ProgressBar(out)
    assert progress.bar is False
    run_with(progress, epochs=3)
    text = out.getvalue()
    assert not BAR_MARKS.search(text), f"bar output in a log: {text!r}"
    lines = text.split("\n")
    assert lines[-1] == ""  # every line ends with a newline
    assert [line.split("  ")[0] for line in lines[:-1]] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert all("test loss" in line and "img/s" in line for line in lines[:-1])


def test_the_check_above_does_see_a_bar_when_one_is_drawn():
    # Guards the test: a forced bar on the same stream must trip BAR_MARKS.
    out = LogFile()
    run_with(ProgressBar(out, bar=True), epochs=1)
    assert BAR_MARKS.search(out.getvalue())
