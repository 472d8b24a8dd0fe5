"""The digit pad (or upload page) as an ASGI app (Starlette): the page, its files, the API.

    GET  /              the page (no CDN, works offline): for a run on 28x28 digits the pad
                        (index.html, app.js), for any other run the upload page
                        (upload.html, upload.js); common.js and style.css for both
    GET  /healthz       {"status": "ok"}
    GET  /api/model     model name, params count, test accuracy, classes, input shape, page
    POST /api/predict   pad: a digit (28x28 array or PNG) -> digit, probabilities, feature maps
                        upload: a picture file -> class, probabilities, the picture as seen

Every error is JSON, {"error": "what was wrong and what to send instead"},
with a 4xx status for anything a client can send: 400 unreadable body,
413 too large, 415 unknown content type, 422 readable but invalid.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
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

from flaxfit.data.images import DIGIT_SHAPES
from flaxfit.runs.directory import Run
from flaxfit.tools.serve.inputs import (
    FORM_FIELDS,
    PICTURE_FIELDS,
    BadInput,
    DigitRequest,
    parse_form,
    parse_json,
    parse_picture_form,
)
from flaxfit.tools.serve.predictor import FIRST_CONV, Prediction, Predictor

#: Largest request body accepted. The pad sends about 10 KB; a 28x28 array as
#: JSON is about 3 KB; an uploaded photo must be saved smaller than this.
#: Larger bodies are cut off while they arrive.
MAX_BODY_BYTES = 2 * 1024 * 1024
STATIC_FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "common.js": "text/javascript; charset=utf-8",
    "upload.html": "text/html; charset=utf-8",
    "upload.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
#: Each page's files, "/" first: only the page that fits the run is served.
PAGES = {
    "pad": ("index.html", "app.js", "common.js", "style.css"),
    "upload": ("upload.html", "upload.js", "common.js", "style.css"),
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


def page_for(input_shape: Sequence[int]) -> str:
    """The page a run gets: "pad" for 28x28 grayscale digits, "upload" for other pictures."""
    return "pad" if tuple(input_shape) in DIGIT_SHAPES else "upload"


def model_info(run: Run, predictor: Predictor, max_body: int) -> dict[str, Any]:
    """What GET /api/model answers: the run's model, size, test accuracy, classes and input."""
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
        "input_shape": list(run.config.input_shape),
        "page": page_for(run.config.input_shape),
        "feature_maps": predictor.has_feature_maps,
        "max_body_bytes": max_body,
    }


def prediction_json(prediction: Prediction, image: np.ndarray, with_maps: bool) -> dict[str, Any]:
    """The JSON of one prediction; `image` is the (28, 28) the model saw."""
    answer: dict[str, Any] = {
        "digit": prediction.digit,
        "probabilities": _rounded(prediction.probabilities),
        "input": image.tolist(),
    }
    if with_maps:
        answer["feature_maps"] = _maps_json(prediction.feature_maps)
    return answer


def picture_json(prediction: Prediction, image: np.ndarray, names: Sequence[str]) -> dict[str, Any]:
    """The JSON of one uploaded picture's prediction.

    Args:
        prediction: the model's answer.
        image: uint8, the run's input shape: the picture as the model saw it.
        names: the run's class names, in the order of `prediction.probabilities`.
    """
    return {
        "class": names[prediction.digit],
        "index": prediction.digit,
        "probabilities": _rounded(prediction.probabilities),
        "input": image.tolist(),
    }


def _rounded(values: np.ndarray) -> list[float]:
    # Six decimals: what a person can read, and a tenth of the JSON of float32's repr.
    return [round(float(v), 6) for v in values]


def _maps_json(maps: np.ndarray | None) -> dict[str, Any] | None:
    """Each channel as 0-255 integers scaled by its own maximum (how a picture of it looks)."""
    if maps is None:
        return None
    channels = np.moveaxis(maps, -1, 0)  # (C, 28, 28)
    peaks = channels.max(axis=(1, 2))
    scaled = channels / np.where(peaks > 0, peaks, 1)[:, None, None] * 255
    return {
        "layer": FIRST_CONV,
        "max": _rounded(peaks),
        "maps": scaled.round().astype(np.uint8).tolist(),
    }


@dataclass(frozen=True)
class _Takes:
    """What POST /api/predict takes for one kind of run, and how it answers."""

    parsers: dict[str, Callable[[Any], Any]]  # media type -> parser of the body or the form
    form_fields: tuple[str, ...]
    expected: str  # what to send instead of another content type
    answer: Callable[[Any], dict[str, Any]]  # a parsed request -> the JSON answer


def _digit_takes(predictor: Predictor) -> _Takes:
    def answer(digit: DigitRequest) -> dict[str, Any]:
        image = digit.model_input()
        return prediction_json(predictor.predict(image), image, digit.feature_maps)

    parsers = {"application/json": parse_json, "multipart/form-data": parse_form}
    expected = ("application/json (Content-Type: application/json) "
                "or multipart/form-data with a PNG in 'file'")  # fmt: skip
    return _Takes(parsers, FORM_FIELDS, expected, answer)


def _picture_takes(predictor: Predictor, names: Sequence[str]) -> _Takes:
    def answer(image: np.ndarray) -> dict[str, Any]:
        return picture_json(predictor.predict(image), image, names)

    shape = predictor.input_shape
    parsers = {"multipart/form-data": partial(parse_picture_form, image_shape=shape)}
    expected = (
        "multipart/form-data with a PNG, JPEG, WebP or BMP picture in 'file' "
        f"(curl -F file=@picture.jpg); this run's model takes {'x'.join(map(str, shape))} "
        "pictures, and any picture is resized to that"
    )
    return _Takes(parsers, PICTURE_FIELDS, expected, answer)


def create_app(run: Run, *, max_body: int = MAX_BODY_BYTES) -> Starlette:
    """The page and API for a loaded run (`flaxfit.runs.directory.load_run`).

    A run on 28x28 grayscale digits gets the digit pad; a run on any other pictures
    (colour, another size) gets the upload page. The model is compiled and warmed
    up here, once; requests only run it.
    """
    kind = page_for(run.config.input_shape)
    if kind == "pad":
        predictor = Predictor(run.model, run.params, run.batch_stats)
        takes = _digit_takes(predictor)
    else:
        # The upload page shows no feature maps: none are captured, nor compiled for.
        predictor = Predictor(run.model, run.params, run.batch_stats,
                              input_shape=run.config.input_shape, feature_maps=False)  # fmt: skip
        takes = _picture_takes(predictor, run.config.names)
    info = model_info(run, predictor, max_body)
    static = resources.files("flaxfit.tools.serve") / "static"
    pages = {name: (static / name).read_bytes() for name in PAGES[kind]}

    async def page(request: Request) -> Response:
        name = request.path_params.get("name", PAGES[kind][0])
        if name not in pages:
            raise HTTPException(404, f"no such file: /{name}")
        return Response(pages[name], media_type=STATIC_FILES[name], headers=SECURITY_HEADERS)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def model(request: Request) -> Response:
        return JSONResponse(info)

    async def predict(request: Request) -> Response:
        try:
            parse, received = await _receive(request, max_body, takes)
            # Parsing, decoding, preparing and the model run in a worker thread:
            # the event loop keeps serving while one request computes.
            answer = await run_in_threadpool(lambda: takes.answer(parse(received)))
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


async def _receive(
    request: Request, max_body: int, takes: _Takes
) -> tuple[Callable[[Any], Any], Any]:
    """Read the body (JSON bytes, or the multipart fields) and pick its parser."""
    media_type = request.headers.get("content-type", "application/json").split(";")[0]
    media_type = media_type.strip().lower()
    parse = takes.parsers.get(media_type)
    if parse is None:  # refused before the body is read
        raise BadInput(f"unsupported content type {media_type!r}: send {takes.expected}", 415)
    if media_type == "multipart/form-data":
        fields: dict[str, Any] = {}
        async with request.form(max_files=1, max_fields=len(takes.form_fields),
                                max_part_size=max_body) as form:  # fmt: skip
            for key, value in form.multi_items():
                if key in fields:
                    raise BadInput(f"form field {key!r} appears twice")
                fields[key] = await value.read() if isinstance(value, UploadFile) else value
        return parse, fields
    return parse, await request.body()
