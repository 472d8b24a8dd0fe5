"""The digit pad as an ASGI app (Starlette): the page, its files and the JSON API.

    GET  /              the page (index.html, app.js, style.css: no CDN, works offline)
    GET  /healthz       {"status": "ok"}
    GET  /api/model     model name, params count, test accuracy of the run
    POST /api/predict   a digit (28x28 array or PNG) -> digit, probabilities, feature maps

Every error is JSON, {"error": "what was wrong and what to send instead"},
with a 4xx status for anything a client can send: 400 unreadable body,
413 too large, 415 unknown content type, 422 readable but invalid.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from typing import Any

import jax
import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, UploadFile
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from flaxfit.runs.directory import Run
from flaxfit.tools.serve.inputs import FORM_FIELDS, BadInput, DigitRequest, parse_form, parse_json
from flaxfit.tools.serve.predictor import FIRST_CONV, Prediction, Predictor

#: Largest request body accepted. The page sends about 10 KB; a 28x28 array as
#: JSON is about 3 KB. Larger bodies are cut off while they arrive.
MAX_BODY_BYTES = 2 * 1024 * 1024

STATIC_FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
# The page may load only its own files: nothing from a CDN, nothing injected.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class BodyTooLarge(HTTPException):
    """A request body over the limit; raised while the body is being read."""

    def __init__(self, limit: int):
        super().__init__(413, f"the body is larger than the {limit:,} bytes allowed")


class BodyLimit:
    """ASGI middleware: 413 for a body over `limit` bytes, declared or counted as it arrives.

    Content-Length alone is not enough: a chunked upload declares no length,
    so the bytes are also counted as the app reads them and reading stops at
    the limit. (Starlette's own max_body_size would answer in plain text; this
    API answers every error in JSON.)
    """

    def __init__(self, app: ASGIApp, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            await _error(BodyTooLarge(self.limit))(scope, receive, send)
            return
        received = 0

        async def counted_receive() -> dict[str, Any]:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)  # answered by _http_error
            return message

        await self.app(scope, counted_receive, send)


def _error(error: HTTPException) -> JSONResponse:
    return JSONResponse({"error": error.detail}, error.status_code, headers=error.headers)


async def _http_error(request: Request, error: Exception) -> Response:
    """404, 405, 413 and Starlette's own 400s, in JSON like every other error."""
    assert isinstance(error, HTTPException)
    return _error(error)


async def _server_error(request: Request, error: Exception) -> Response:
    # Never expected: every client mistake is a 4xx. Still JSON, and no traceback to the client.
    return JSONResponse({"error": f"internal error ({type(error).__name__}); see the server log"},
                        500)  # fmt: skip


def params_count(params: Any) -> int:
    """Number of scalars in a params tree."""
    return int(sum(np.size(leaf) for leaf in jax.tree.leaves(params)))


def model_info(run: Run, predictor: Predictor, max_body: int) -> dict[str, Any]:
    """What GET /api/model answers: the run's model, size and test accuracy."""
    history = run.history
    last = history.last if len(history) else {}
    return {
        "model": run.config.model,
        "dataset": run.config.dataset,
        "run": run.directory.name,
        "params": params_count(run.params),
        "epochs": last.get("epoch"),
        "test_accuracy": last.get("test_accuracy"),
        "classes": list(run.config.names),
        "feature_maps": predictor.has_feature_maps,
        "max_body_bytes": max_body,
    }


def prediction_json(prediction: Prediction, image: np.ndarray, with_maps: bool) -> dict[str, Any]:
    """The JSON of one prediction; `image` is the (28, 28) the model saw."""
    answer: dict[str, Any] = {
        "digit": prediction.digit,
        "probabilities": [round(float(p), 6) for p in prediction.probabilities],
        "input": image.tolist(),
    }
    if with_maps:
        answer["feature_maps"] = _maps_json(prediction.feature_maps)
    return answer


def _maps_json(maps: np.ndarray | None) -> dict[str, Any] | None:
    """Each channel as 0-255 integers scaled by its own maximum (how a picture of it looks)."""
    if maps is None:
        return None
    channels = np.moveaxis(maps, -1, 0)  # (C, 28, 28)
    peaks = channels.max(axis=(1, 2))
    scaled = channels / np.where(peaks > 0, peaks, 1)[:, None, None] * 255
    return {
        "layer": FIRST_CONV,
        "max": [round(float(p), 6) for p in peaks],
        "maps": scaled.round().astype(np.uint8).tolist(),
    }


def create_app(run: Run, *, max_body: int = MAX_BODY_BYTES) -> Starlette:
    """The digit pad for a loaded run (`flaxfit.runs.directory.load_run`).

    The model is compiled and warmed up here, once; requests only run it.
    """
    if tuple(run.config.input_shape) not in ((28, 28), (28, 28, 1)):
        raise ValueError(
            f"{run.directory}: the digit pad draws 28x28 grayscale digits, but this run's "
            f"model takes {run.config.input_shape} pictures; classify them with "
            "`flaxfit predict --run RUN PICTURE...`"
        )
    predictor = Predictor(run.model, run.params, run.batch_stats)
    info = model_info(run, predictor, max_body)
    static = resources.files("flaxfit.tools.serve") / "static"
    pages = {name: (static / name).read_bytes() for name in STATIC_FILES}

    async def page(request: Request) -> Response:
        name = request.path_params.get("name", "index.html")
        if name not in pages:
            raise HTTPException(404, f"no such file: /{name}")
        return Response(pages[name], media_type=STATIC_FILES[name], headers=SECURITY_HEADERS)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def model(request: Request) -> Response:
        return JSONResponse(info)

    async def predict(request: Request) -> Response:
        try:
            parse, received = await _receive(request, max_body)
            # Parsing, decoding, preparing and the model run in a worker thread:
            # the event loop keeps serving while one request computes.
            answer = await run_in_threadpool(_answer, predictor, parse, received)
        except BadInput as error:
            return JSONResponse({"error": str(error)}, error.status)
        return JSONResponse(answer)

    routes = [
        Route("/healthz", healthz),
        Route("/api/model", model),
        Route("/api/predict", predict, methods=["POST"]),
        Route("/", page),
        Route("/{name:str}", page),  # after the API: only the page's own files
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(BodyLimit, limit=max_body)],
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
    )


Parser = Callable[[Any], DigitRequest]


async def _receive(request: Request, max_body: int) -> tuple[Parser, Any]:
    """Read the body (JSON bytes, or the multipart fields) and pick its parser."""
    media_type = request.headers.get("content-type", "application/json").split(";")[0]
    media_type = media_type.strip().lower()
    if media_type == "multipart/form-data":
        fields: dict[str, Any] = {}
        async with request.form(max_files=1, max_fields=len(FORM_FIELDS),
                                max_part_size=max_body) as form:  # fmt: skip
            for key, value in form.multi_items():
                if key in fields:
                    raise BadInput(f"form field {key!r} appears twice")
                fields[key] = await value.read() if isinstance(value, UploadFile) else value
        return parse_form, fields
    if media_type != "application/json":
        raise BadInput(
            f"unsupported content type {media_type!r}: send application/json "
            "(Content-Type: application/json) or multipart/form-data with a PNG in 'file'",
            415,
        )
    return parse_json, await request.body()


def _answer(predictor: Predictor, parse: Parser, received: Any) -> dict[str, Any]:
    digit = parse(received)
    image = digit.model_input()
    return prediction_json(predictor.predict(image), image, digit.feature_maps)
