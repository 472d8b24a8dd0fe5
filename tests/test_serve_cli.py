"""`flaxfit serve` from the command line: its errors, its warning, and a real start and stop."""

import os
import re
import select
import signal
import socket
import subprocess
import sys
import time

import httpx2 as httpx
import pytest

from flaxfit.cli import main
from flaxfit.tools.serve import server
from serve_helpers import shared_digit_run, wait_until_healthy


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return shared_digit_run(tmp_path_factory)


def one_error_line(capsys, *fragments):
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("flaxfit serve: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_a_missing_run_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["serve", "--run", str(tmp_path / "missing")]) == 2
    one_error_line(capsys, "missing: no such directory")


def test_a_directory_that_is_not_a_run_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["serve", "--run", str(tmp_path), "--port", "0"]) == 2
    one_error_line(capsys, "config.json: no such file")


@pytest.mark.parametrize("port, fragment", [("70000", "must be 0..65535"), ("http", "port number")])
def test_a_bad_port_is_one_line_and_exit_2(run_dir, capsys, port, fragment):
    assert main(["serve", "--run", str(run_dir), "--port", port]) == 2
    one_error_line(capsys, fragment)


def test_a_port_in_use_is_named_in_one_line_and_exit_2(run_dir, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--run", str(run_dir), "--port", str(port)]) == 2
    one_error_line(capsys, f"port {port} is already in use", "--port")


def test_an_address_of_another_machine_is_one_line_and_exit_2(run_dir, capsys):
    # 192.0.2.0/24 is reserved for documentation: never an address of this machine.
    assert main(["serve", "--run", str(run_dir), "--host", "192.0.2.1", "--port", "0"]) == 2
    one_error_line(capsys, "--host 192.0.2.1: not an address of this machine")


def test_listening_beyond_this_machine_warns_on_stderr(run_dir, capsys, monkeypatch):
    served = []
    # Stop short of serving: the test checks what is said, and opens nothing to the network.
    monkeypatch.setattr(server, "_run_uvicorn", lambda app, sock: served.append(sock.getsockname()))
    assert main(["serve", "--run", str(run_dir), "--host", "0.0.0.0", "--port", "0"]) == 0
    captured = capsys.readouterr()
    assert "warning: listening on 0.0.0.0" in captured.err
    assert "reached from other machines" in captured.err and "--host 127.0.0.1" in captured.err
    port = served[0][1]
    assert re.search(rf"cnn1 from .* at http://127\.0\.0\.1:{port}/ ", captured.out)


def test_the_default_host_is_this_machine_only_and_says_nothing_more(run_dir, capsys, monkeypatch):
    served = []
    monkeypatch.setattr(server, "_run_uvicorn", lambda app, sock: served.append(sock.getsockname()))
    assert main(["serve", "--run", str(run_dir), "--port", "0"]) == 0
    assert served[0][0] == "127.0.0.1"
    assert capsys.readouterr().err == ""


def test_serve_says_what_its_start_spent_compiling_cold_then_from_the_cache(
    run_dir, capsys, monkeypatch, tmp_path
):
    import jax

    monkeypatch.setenv("FLAXFIT_CACHE", str(tmp_path))  # an empty compilation cache
    monkeypatch.setattr(server, "_run_uvicorn", lambda app, sock: None)
    notes = []
    for _ in ("cold", "warm"):
        jax.clear_caches()  # as a new process: compiled afresh or read from disk
        assert main(["serve", "--run", str(run_dir), "--port", "0"]) == 0
        line = capsys.readouterr().out.strip()
        match = re.search(r"\(Ctrl\+C stops\); compile \d+\.\d\d s, (\d+)/(\d+) programs "
                          r"from the cache$", line)  # fmt: skip
        assert match, line
        notes.append(tuple(int(n) for n in match.groups()))
    (cold_hits, cold_programs), (warm_hits, warm_programs) = notes
    assert cold_hits == 0 < cold_programs
    assert warm_hits == warm_programs == cold_programs


def read_line(stream, timeout):
    """One line of a subprocess' output, or AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([stream], [], [], deadline - time.monotonic())
        if ready:
            return stream.readline()
    raise AssertionError(f"no output within {timeout} s")


def test_serve_starts_prints_its_url_answers_and_stops_on_ctrl_c(run_dir):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "flaxfit", "serve", "--run", str(run_dir), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        line = read_line(process.stdout, 120)
        match = re.search(r"at (http://127\.0\.0\.1:\d+/) \(Ctrl\+C stops\)", line)
        assert match, line + process.stderr.read() if process.poll() is not None else line
        url = match.group(1).rstrip("/")
        wait_until_healthy(url, 30, alive=lambda: process.poll() is None)
        assert httpx.get(f"{url}/api/model").json()["model"] == "cnn1"
        assert "flaxfit digit pad" in httpx.get(url).text
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 130
        assert "flaxfit serve: interrupted" in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
