"""Fuzzing /api/predict: whatever a client sends, the answer is a JSON 200 or 4xx, never a 5xx.

The digit pad's API with any JSON, bytes and PNG-like uploads; a colour run's with
picture uploads near each of the four formats it takes."""

import base64
import io
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from starlette.testclient import TestClient

from flaxfit.runs.directory import load_run
from flaxfit.tools.serve import create_app
from helpers import CLASSES, shared_colour_run
from serve_helpers import png_bomb, png_bytes, shared_digit_run

# Pillow warns about huge declared sizes before flaxfit refuses them; expected here.
pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
LIMIT = 16 * 1024
FUZZ = settings(
    max_examples=80, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)  # fmt: skip
GOOD_PNG = png_bytes(np.random.default_rng(0).integers(0, 256, (30, 20), dtype=np.uint8))


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    # raise_server_exceptions=False: a server error must show up as a 5xx to assert on.
    app = create_app(load_run(shared_digit_run(tmp_path_factory)), max_body=LIMIT)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture(scope="module")
def colour_client(tmp_path_factory):
    app = create_app(load_run(shared_colour_run(tmp_path_factory, "cnn1") / "run"), max_body=LIMIT)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def assert_handled(response):
    assert response.status_code < 500, response.text
    body = response.json()
    if response.status_code == 200:
        assert set(body) >= {"probabilities", "input"}
        assert abs(sum(body["probabilities"]) - 1) < 1e-3
        if "digit" in body:  # the pad's answer
            assert 0 <= body["digit"] <= 9
        else:  # the upload page's
            assert body["class"] == CLASSES[body["index"]]
    else:
        assert 400 <= response.status_code < 500 and isinstance(body["error"], str)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=20,
)
pixels = st.one_of(st.integers(-2, 300), st.floats(), json_values)
BLANK = [[0] * 28 for _ in range(28)]
rows = st.one_of(
    st.lists(st.lists(pixels, min_size=27, max_size=29), min_size=27, max_size=29),
    # a valid image with one pixel replaced: fuzzing near the valid inputs
    st.builds(
        lambda r, c, value: [row if i != r else row[:c] + [value] + row[c + 1 :]
                             for i, row in enumerate(BLANK)],
        st.integers(0, 27), st.integers(0, 27), pixels,
    ),
)  # fmt: skip


def mutated(good):
    """Almost-pictures reach deeper into a decoder than random bytes: `good` with bytes
    replaced, or cut short."""
    return st.builds(
        lambda cut, where, junk: (good[:where] + junk + good[where + len(junk) :])[:cut],
        st.integers(8, len(good)), st.integers(8, len(good) - 1),
        st.binary(min_size=1, max_size=8),
    )  # fmt: skip


# A header that declares a huge size is the other way in.
bombs = st.builds(png_bomb, st.integers(1, 70000), st.integers(1, 70000))
png_like = st.one_of(st.binary(max_size=64), mutated(GOOD_PNG), st.just(GOOD_PNG), bombs)
png_field = st.one_of(
    png_like.map(lambda b: base64.b64encode(b).decode()),
    png_like.map(lambda b: "data:image/png;base64," + base64.b64encode(b).decode()),
    json_values,
)
flags = st.fixed_dictionaries(
    {},
    optional={"center": st.booleans() | json_values, "feature_maps": st.booleans() | json_values},
)
# Mostly well-formed requests with one bad part, so that the fuzzing reaches the
# checks of every field and the decoder, not only "this is not an object".
requests = st.one_of(
    st.builds(lambda image, more: {"image": image, **more}, rows, flags),
    st.builds(lambda png, more: {"png": png, **more}, png_field, flags),
    st.fixed_dictionaries({}, optional={"image": json_values, "png": json_values}),
    st.dictionaries(st.text(max_size=8), json_values, max_size=3),
)


@FUZZ
@given(body=requests | json_values)
def test_any_json_body(client, body):
    text = json.dumps(body)  # NaN and Infinity included: Python writes them, clients may too
    assert_handled(
        client.post("/api/predict", content=text, headers={"content-type": "application/json"})
    )


@FUZZ
@given(
    body=st.binary(max_size=2 * LIMIT),
    content_type=st.sampled_from([
        None, "application/json", "multipart/form-data", "multipart/form-data; boundary=x",
        "text/plain", "image/png", "application/json; charset=utf-16",
    ]),
)  # fmt: skip
def test_any_bytes_with_any_content_type(client, body, content_type):
    headers = {"content-type": content_type} if content_type else {}
    assert_handled(client.post("/api/predict", content=body, headers=headers))


@FUZZ
@given(
    data=png_like,
    fields=st.dictionaries(
        st.sampled_from(["center", "feature_maps", "center", "feature_maps", "other"]),
        st.sampled_from(["true", "false", "1", "0", "on"]) | st.text(max_size=6),
        max_size=2,
    ),
)
def test_any_multipart_upload(client, data, fields):
    assert_handled(client.post("/api/predict", files={"file": ("x.png", data)}, data=fields))


def picture_file(kind):
    buffer = io.BytesIO()
    colours = np.random.default_rng(1).integers(0, 256, (30, 20, 3), dtype=np.uint8)
    Image.fromarray(colours).save(buffer, format=kind)
    return buffer.getvalue()


GOOD_PICTURES = [picture_file(kind) for kind in ("PNG", "JPEG", "WEBP", "BMP")]
picture_like = st.one_of(
    st.binary(max_size=64), bombs, st.sampled_from(GOOD_PICTURES),
    *[mutated(good) for good in GOOD_PICTURES],
)  # fmt: skip


@FUZZ
@given(data=picture_like, field=st.sampled_from(["file", "file", "other"]))
def test_any_picture_upload_to_a_colour_run(colour_client, data, field):
    assert_handled(colour_client.post("/api/predict", files={field: ("x.jpg", data)}))
