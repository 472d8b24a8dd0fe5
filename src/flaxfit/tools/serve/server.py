"""`flaxfit serve`: bind the port, build the app, run uvicorn until Ctrl+C."""

from __future__ import annotations

import errno
import os
import socket
import sys
from typing import Any, TextIO

from flaxfit.runs.directory import load_run
from flaxfit.training.compile_watch import CompileStats, watch_compiles

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def exposure_warning(host: str) -> str | None:
    """The warning to print when `host` lets other machines reach the server, else None."""
    if host in LOCAL_HOSTS:
        return None
    return (
        f"flaxfit serve: warning: listening on {host}: the page and the API can be reached "
        "from other machines on the network, with no password; use --host 127.0.0.1 "
        "to keep it on this machine"
    )


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port, not yet listening (uvicorn listens on it).

    Binding here, before the run is loaded and its model compiled, turns a
    taken port into a one-line error at once. Raises ValueError saying what
    to change.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (socket.gaierror, UnicodeError) as error:
        raise ValueError(f"--host {host}: not a known host name or address ({error})") from None
    sock = socket.socket(family, kind, proto)
    # A restart need not wait out TIME_WAIT; a port someone listens on is still refused.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as error:
        sock.close()
        raise ValueError(_bind_problem(error, host, port)) from None
    return sock


def _bind_problem(error: OSError, host: str, port: int) -> str:
    if error.errno == errno.EADDRINUSE:
        return (
            f"port {port} is already in use on {host}; stop the program using it, or pass "
            "--port with another number (--port 0 picks a free one)"
        )
    if error.errno == errno.EACCES:
        return f"port {port}: permission denied (ports below 1024 need root); pass --port 8000"
    if error.errno == errno.EADDRNOTAVAIL:
        return f"--host {host}: not an address of this machine; use --host 127.0.0.1"
    return f"cannot listen on {host} port {port}: {os.strerror(error.errno or 0)}"


def url(host: str, port: int) -> str:
    """The address to open in a browser on this machine."""
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def serve(
    run_dir: str | os.PathLike,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    out: TextIO | None = None,
    allow_changed_model: bool = False,
) -> None:
    """Serve the digit pad (or upload page) for the run in `run_dir` until interrupted.

    Listens on 127.0.0.1 unless another `host` is asked for, and then warns
    on stderr. Port 0 picks a free port; the URL printed names the real one.

    Raises:
        ValueError (RunError included): the run cannot be loaded, or the port
            cannot be used; the message says what to do.
    """
    from flaxfit.tools.serve.app import create_app

    out = out or sys.stdout
    sock = bind(host, port)  # first: a taken port is reported before seconds of loading
    try:
        warning = exposure_warning(host)
        if warning:
            print(warning, file=sys.stderr, flush=True)
        with watch_compiles() as compiled:  # what the start waited for, as train reports it
            run = load_run(run_dir, allow_changed_model=allow_changed_model)
            app = create_app(run)  # compiles the model: the URL is printed once it is ready
        address = url(host, sock.getsockname()[1])
        print(f"flaxfit serve: {run.config.model} from {run_dir} at {address} (Ctrl+C stops); "
              f"{compile_note(compiled)}", file=out, flush=True)  # fmt: skip
        _run_uvicorn(app, sock)
    finally:
        sock.close()


def compile_note(compiled: CompileStats) -> str:
    """E.g. "compile 0.21 s, 2/2 programs from the cache": what start-up spent compiling."""
    return (f"compile {compiled.seconds:.2f} s, {compiled.cache_hits}/{compiled.compiles} "
            "programs from the cache")  # fmt: skip


def _run_uvicorn(app: Any, sock: socket.socket) -> None:
    """Serve `app` on the bound `sock` until SIGINT/SIGTERM (then finish open requests)."""
    import uvicorn

    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=5
    )
    uvicorn.Server(config).run(sockets=[sock])
    # Only a signal stops the server. uvicorn re-raises it once shut down: SIGTERM ends the
    # process, SIGINT goes to asyncio's handler, which turns it into KeyboardInterrupt only
    # if the server's task is still running, so under load it can come back here instead.
    raise KeyboardInterrupt
