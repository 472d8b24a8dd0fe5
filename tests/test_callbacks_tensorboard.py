"""TensorBoard: the event files are read back here byte by byte, not through tensorboardX."""

import math
import os
import struct
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from tensorboardX.proto.event_pb2 import Event

import flaxfit
from flaxfit.models import SoftmaxRegression
from flaxfit.training.callbacks import TensorBoard
from flaxfit.training.loop import fit
from flaxfit.training.step import create_train_state
from helpers import make_digits

ALL_TAGS = {
    "loss/train", "loss/test", "accuracy/train", "accuracy/test",
    "speed/images_per_second", "speed/seconds",
}  # fmt: skip


def _crc32c_table():
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)  # Castagnoli, reflected
        table.append(crc)
    return table


CRC32C_TABLE = _crc32c_table()


def masked_crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def read_records(path: Path) -> list[bytes]:
    """TFRecord framing: u64 length, u32 masked crc of it, payload, u32 masked crc of that."""
    data = path.read_bytes()
    records, at = [], 0
    while at < len(data):
        header = data[at : at + 8]
        (length,) = struct.unpack("<Q", header)
        (header_crc,) = struct.unpack("<I", data[at + 8 : at + 12])
        payload = data[at + 12 : at + 12 + length]
        (payload_crc,) = struct.unpack("<I", data[at + 12 + length : at + 16 + length])
        assert header_crc == masked_crc32c(header), f"{path}: bad length crc at byte {at}"
        assert len(payload) == length, f"{path}: truncated record at byte {at}"
        assert payload_crc == masked_crc32c(payload), f"{path}: bad data crc at byte {at}"
        records.append(payload)
        at += 16 + length
    return records


def read_scalars(logdir: Path) -> dict[tuple[str, int], float]:
    """{(tag, step): value} from the one event file in `logdir`."""
    (path,) = logdir.glob("events.out.tfevents.*")
    events = [Event.FromString(record) for record in read_records(path)]
    assert events[0].file_version == "brain.Event:2"  # how TensorBoard recognises the file
    scalars = {}
    for event in events[1:]:
        for value in event.summary.value:
            key = (value.tag, event.step)
            assert key not in scalars, f"{key} written twice"
            scalars[key] = value.simple_value
    return scalars


def row(epoch, test=True):
    return {
        "epoch": epoch, "train_loss": 1.0 / epoch, "train_accuracy": 0.5 + 0.1 * epoch,
        "test_loss": 1.5 / epoch if test else math.nan,
        "test_accuracy": 0.4 + 0.1 * epoch if test else math.nan,
        "seconds": 0.25 * epoch, "images_per_second": 1000.0 * epoch,
    }  # fmt: skip


def test_every_epoch_is_written_with_its_tags_steps_and_values(tmp_path):
    logdir = tmp_path / "tb"
    state = create_train_state(SoftmaxRegression(), jax.random.key(0))
    _, history = fit(state, make_digits(300), make_digits(100, seed=1), epochs=3,
                     batch_size=100, callbacks=[TensorBoard(logdir)], verbose=False)  # fmt: skip

    scalars = read_scalars(logdir)
    assert {tag for tag, _ in scalars} == ALL_TAGS
    assert {step for _, step in scalars} == {1, 2, 3}
    columns = {
        "loss/train": "train_loss", "loss/test": "test_loss",
        "accuracy/train": "train_accuracy", "accuracy/test": "test_accuracy",
        "speed/images_per_second": "images_per_second", "speed/seconds": "seconds",
    }  # fmt: skip
    for (tag, step), value in scalars.items():
        # Scalars are stored as float32.
        assert value == np.float32(history[columns[tag]][step - 1]), (tag, step)


def test_without_a_test_split_there_are_no_test_scalars(tmp_path):
    board = TensorBoard(tmp_path)
    board.on_fit_begin(None, 2)
    for epoch in (1, 2):
        board.on_epoch_end(epoch, None, row(epoch, test=False))
    board.on_fit_end(None, None)
    scalars = read_scalars(tmp_path)
    assert {tag for tag, _ in scalars} == ALL_TAGS - {"loss/test", "accuracy/test"}
    assert scalars[("loss/train", 2)] == 0.5
    assert scalars[("speed/images_per_second", 2)] == 2000.0
    assert not any(math.isnan(value) for value in scalars.values())


def open_files():
    """Paths of the files this process has open (Linux)."""
    fds = Path("/proc/self/fd")
    return {os.path.realpath(fds / fd) for fd in os.listdir(fds)}


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs Linux /proc")
def test_each_epoch_is_on_disk_when_its_hook_returns_and_fit_end_closes(tmp_path):
    board = TensorBoard(tmp_path)
    board.on_fit_begin(None, 2)
    board.on_epoch_end(1, None, row(1))
    assert {step for _, step in read_scalars(tmp_path)} == {1}  # flushed, not queued
    board.on_epoch_end(2, None, row(2))
    assert {step for _, step in read_scalars(tmp_path)} == {1, 2}
    (path,) = tmp_path.glob("events.out.tfevents.*")
    assert os.path.realpath(path) in open_files()
    board.on_fit_end(None, None)
    assert os.path.realpath(path) not in open_files()
    board.close()  # closing again is harmless


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs Linux /proc")
def test_an_interrupted_fit_closes_the_file_too(tmp_path):
    board = TensorBoard(tmp_path)
    board.on_fit_begin(None, 3)
    board.on_epoch_end(1, None, row(1))
    (path,) = tmp_path.glob("events.out.tfevents.*")
    board.on_interrupt(None, None, None)  # fit raises after this, skipping on_fit_end
    assert os.path.realpath(path) not in open_files()
    assert {step for _, step in read_scalars(tmp_path)} == {1}


def test_two_fits_within_one_second_keep_both_event_files(tmp_path, monkeypatch):
    import tensorboardX.event_file_writer

    # tensorboardX names files by the second: make both fits land in the same one.
    monkeypatch.setattr(tensorboardX.event_file_writer.time, "time", lambda: 1_800_000_000.5)
    for run in (1, 2):
        board = TensorBoard(tmp_path)
        board.on_fit_begin(None, 1)
        board.on_epoch_end(1, None, row(run))
        board.on_fit_end(None, None)
    paths = sorted(tmp_path.glob("events.out.tfevents.*"))
    assert len(paths) == 2
    losses = set()
    for path in paths:
        events = [Event.FromString(record) for record in read_records(path)[1:]]
        losses |= {v.simple_value for e in events for v in e.summary.value if v.tag == "loss/train"}
    assert losses == {1.0, 0.5}


def test_building_the_callback_writes_nothing(tmp_path):
    TensorBoard(tmp_path / "tb")
    assert not (tmp_path / "tb").exists()


def test_a_missing_tensorboardx_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # makes `import tensorboardX` fail
    with pytest.raises(ImportError, match=r"pip install 'tensorboardX>=2.6'"):
        TensorBoard(tmp_path)


def test_importing_flaxfit_does_not_import_tensorboardx():
    src = str(Path(flaxfit.__file__).parents[1])
    env = os.environ | {"PYTHONPATH": src, "JAX_PLATFORMS": "cpu"}
    code = "import sys, flaxfit, flaxfit.callbacks; sys.exit('tensorboardX' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], env=env).returncode == 0
