"""The digit pad's HTTP API through Starlette's TestClient: every good and bad input."""

import base64
import fnmatch
import io
import json
import tomllib
from pathlib import Path

import jax
import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from flaxfit.data.images import load_picture, prepare_digit
from flaxfit.runs.config import TrainConfig
from flaxfit.runs.directory import Run, load_run
from flaxfit.tools.predict import predict_probabilities
from flaxfit.tools.serve import create_app
from flaxfit.tools.serve.app import PAGES, STATIC_FILES
from flaxfit.training.history import History
from flaxfit.training.step import create_train_state
from helpers import CLASSES, colour_dataset, shared_colour_run
from serve_helpers import png_bomb, png_bytes, shared_digit_run
from stroke_digits import draw_digit, stroke_digits

SMALL_LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return load_run(shared_digit_run(tmp_path_factory))


@pytest.fixture(scope="module")
def client(run):
    with TestClient(create_app(run, max_body=SMALL_LIMIT)) as client:
        yield client


@pytest.fixture(scope="module")
def roomy_client(run):
    """With the default body limit, which a deeply nested body fits in."""
    with TestClient(create_app(run)) as client:
        yield client


@pytest.fixture(scope="module")
def digits():
    return stroke_digits(10, seed=7)


def drawing(label, seed=0, side=280):
    """A large dark-on-white drawing of `label`, as a person would draw it on paper."""
    page = draw_digit(label, np.random.default_rng(seed))
    return 255 - np.asarray(Image.fromarray(page).resize((side, side)))


def b64(data):
    return base64.b64encode(data).decode()


def assert_error(response, status, *fragments):
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    message = response.json()["error"]
    for fragment in fragments:
        assert fragment in message, message


# --- good requests -------------------------------------------------------------------


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_model_names_the_run_its_size_and_test_accuracy(client, run):
    info = client.get("/api/model").json()
    params = sum(x.size for x in jax.tree.leaves(run.params))
    assert info["model"] == "cnn1" and info["dataset"] == "mnist"
    assert info["params"] == params == 3_222_954
    assert info["test_accuracy"] == run.history.last["test_accuracy"] > 0.9
    assert info["epochs"] == 1 and info["feature_maps"] is True
    assert info["max_body_bytes"] == SMALL_LIMIT
    assert info["classes"] == list("0123456789")
    assert info["input_shape"] == [28, 28] and info["page"] == "pad"


def test_an_array_gets_the_same_probabilities_as_predict_probabilities(client, run, digits):
    images, labels = digits
    for image, label in zip(images, labels, strict=True):
        answer = client.post("/api/predict", json={"image": image.tolist(), "center": False}).json()
        expected = predict_probabilities(run.model, run.params, image[None])[0]
        np.testing.assert_allclose(answer["probabilities"], expected, atol=1e-6)
        assert answer["digit"] == int(expected.argmax()) == label
        assert answer["input"] == image.tolist()  # center=False: used as sent
        assert "feature_maps" not in answer


def test_an_array_is_prepared_like_mnist_by_default(client):
    page = np.zeros((28, 28), np.uint8)
    page[2:12, 1:4] = 255  # a short stroke in a corner
    answer = client.post("/api/predict", json={"image": page.tolist()}).json()
    assert answer["input"] == prepare_digit(page).tolist()


def test_png_base64_plain_and_as_a_data_url(client):
    png = png_bytes(drawing(7))
    plain = client.post("/api/predict", json={"png": b64(png)}).json()
    data_url = client.post("/api/predict", json={"png": "data:image/png;base64," + b64(png)})
    assert plain == data_url.json()
    assert plain["digit"] == 7
    assert plain["input"] == prepare_digit(drawing(7)).tolist()


def test_every_digit_drawn_dark_on_white_is_read(client):
    for label in range(10):
        answer = client.post("/api/predict", json={"png": b64(png_bytes(drawing(label, 3)))})
        assert answer.json()["digit"] == label


def test_multipart_upload_rgb_png(client):
    rgb = np.stack([drawing(3)] * 3, axis=-1)
    files = {"file": ("three.png", png_bytes(rgb), "image/png")}
    answer = client.post("/api/predict", files=files, data={"feature_maps": "true"}).json()
    assert answer["digit"] == 3
    assert len(answer["feature_maps"]["maps"]) == 16


def test_feature_maps_are_the_first_conv_layer_scaled_per_channel(client, run, digits):
    from flaxfit.tools.plots import feature_maps

    image = digits[0][0]
    answer = client.post(
        "/api/predict", json={"image": image.tolist(), "center": False, "feature_maps": True}
    ).json()
    maps = answer["feature_maps"]
    expected = feature_maps(run.model, run.params, image)["Conv_0"]  # (28, 28, 16)
    assert maps["layer"] == "Conv_0"
    np.testing.assert_allclose(maps["max"], expected.max(axis=(0, 1)), rtol=1e-5, atol=1e-6)
    got = np.asarray(maps["maps"], float)  # (16, 28, 28), 0..255
    assert got.shape == (16, 28, 28) and got.min() >= 0 and got.max() == 255
    peaks = np.maximum(expected.max(axis=(0, 1)), 1e-12)
    np.testing.assert_allclose(got, np.moveaxis(expected / peaks * 255, -1, 0), atol=0.51)


def test_a_model_without_conv_layers_has_no_feature_maps(tmp_path):
    config = TrainConfig(model="softmax")
    params = create_train_state(config.make_model(), jax.random.key(0)).params
    app = create_app(Run(tmp_path, config, History(), params))
    with TestClient(app) as client:
        info = client.get("/api/model").json()
        assert info["feature_maps"] is False and info["test_accuracy"] is None
        blank = np.zeros((28, 28), int).tolist()
        answer = client.post("/api/predict", json={"image": blank, "feature_maps": True}).json()
        assert answer["feature_maps"] is None and len(answer["probabilities"]) == 10


def served_page(client, kind):
    """GET / as the page `kind` of PAGES, checking that all its files, and only they, are
    served from flaxfit itself."""
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.text == client.get(f"/{PAGES[kind][0]}").text
    for name in PAGES[kind]:
        response = client.get(f"/{name}")
        assert response.status_code == 200, name
        assert response.headers["content-type"] == STATIC_FILES[name]
        assert "http://" not in response.text and "https://" not in response.text, name
        assert name in page.text or name == PAGES[kind][0], name  # each one is used
    for name in set(STATIC_FILES) - set(PAGES[kind]):  # the other page's, which cannot work
        assert_error(client.get(f"/{name}"), 404, f"no such file: /{name}")
    return page.text


def test_the_page_and_its_files_are_served_with_no_outside_references(client):
    page = served_page(client, "pad")
    assert 'id="pad"' in page
    assert 'src="common.js"' in page and 'src="app.js"' in page and 'href="style.css"' in page


def test_the_page_files_are_package_data():
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["flaxfit"]
    for name in STATIC_FILES:
        assert any(fnmatch.fnmatch(f"tools/serve/static/{name}", p) for p in patterns), name


# --- bad requests --------------------------------------------------------------------

row = [0] * 28


@pytest.mark.parametrize(
    "body, fragment",
    [
        ({"image": [row] * 27}, "got an array of length 27"),
        ({"image": [row] * 27 + [[0] * 29]}, "row 27 is an array of length 29"),
        ({"image": [[row] * 28] * 28}, "[0][0] is an array"),
        ({"image": [row] * 27 + [0]}, "row 27 is a number"),
        ({"image": "0" * 784}, "got a string"),
        ({"image": None}, "got null"),
        ({"image": [row] * 27 + [[0] * 27 + ["7"]]}, "[27][27] is a string"),
        ({"image": [row] * 27 + [[0] * 27 + [True]]}, "[27][27] is a boolean"),
        ({"image": [row] * 27 + [[0] * 27 + [256]]}, "[27][27] is 256"),
        ({"image": [row] * 27 + [[0] * 27 + [-1]]}, "[27][27] is -1"),
        ({"image": [row] * 27 + [[0] * 27 + [10**400]]}, "[27][27] is too large a number"),
        ({"png": 12}, "'png' must be a base64 string, got a number"),
        ({"png": "not base64!"}, "'png' is not valid base64"),
        ({"png": "data:image/png,abc"}, "must be base64"),
        ({"png": ""}, "'png' is empty"),
        ({"png": b64(b"hello, not a picture")}, "'png': not a readable image (not PNG)"),
        ({"png": b64(b"\x89PNG\r\n\x1a\n" + bytes(64))}, "'png': not a readable image"),
        ({"png": b64(png_bomb())}, "larger than"),
        ({"png": b64(png_bomb(3000, 3000))}, "3000x3000 pixels is larger than the 4,194,304"),
        ({}, "send exactly one of the fields 'image' and 'png'"),
        ({"center": True}, "send exactly one of the fields"),
        ({"image": [row] * 28, "png": ""}, "send exactly one of the fields"),
        ({"imgae": [row] * 28}, "unknown field 'imgae'"),
        ({"image": [row] * 28, "feature_maps": "yes"}, "'feature_maps' must be true or false"),
        ({"image": [row] * 28, "center": 1}, "'center' must be true or false"),
    ],
)
def test_invalid_fields_are_422_with_a_json_error(client, body, fragment):
    assert_error(client.post("/api/predict", json=body), 422, fragment)


def test_gif_upload_is_refused(client):
    buffer = io.BytesIO()
    Image.fromarray(drawing(1)).save(buffer, format="GIF")
    assert_error(client.post("/api/predict", json={"png": b64(buffer.getvalue())}), 422, "not PNG")


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_nan_and_infinity_are_refused(client, literal):
    pixels = ",".join(["0"] * 27 + [literal])
    body = '{"image": [' + ",".join([f"[{pixels}]"] * 28) + "]}"
    response = client.post(
        "/api/predict", content=body, headers={"content-type": "application/json"}
    )
    assert_error(response, 422, "[0][27] is")


@pytest.mark.parametrize(
    "body, fragment",
    [
        (b"[1, 2, 3]", "must be a JSON object, got an array"),
        (b'"image"', "must be a JSON object, got a string"),
        (b"42", "must be a JSON object, got a number"),
        (b"null", "must be a JSON object, got null"),
        (b"", "not valid JSON"),
        (b"{'image': 1}", "not valid JSON"),
        (b"\xff\xfe\x00garbage", "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),  # deeper than Python recurses
        (b'{"image": ' + b"9" * 5000 + b"}", "not valid JSON"),  # int longer than Python allows
    ],
)
def test_bodies_that_are_not_a_json_object_are_400(roomy_client, body, fragment):
    headers = {"content-type": "application/json"}
    assert_error(roomy_client.post("/api/predict", content=body, headers=headers), 400, fragment)


def test_other_content_types_are_415(client):
    form = {"content-type": "application/x-www-form-urlencoded"}  # curl -d without -H
    assert_error(client.post("/api/predict", content=b"{}", headers=form), 415, "application/json")
    response = client.post(
        "/api/predict", content=png_bytes(drawing(1)), headers={"content-type": "image/png"}
    )
    assert_error(response, 415, "multipart/form-data with a PNG in 'file'")


def test_a_missing_content_type_is_read_as_json(client):
    body = json.dumps({"image": [row] * 28}).encode()
    assert client.post("/api/predict", content=body).status_code == 200


@pytest.mark.parametrize(
    "files, data, status, fragment",
    [
        ({"feature_maps": (None, "true")}, None, 422, "needs a PNG file in the field 'file'"),
        ({"file": (None, "a string")}, None, 422, "needs a PNG file in the field 'file'"),
        ({"upload": ("a.png", b"x", "image/png")}, None, 422, "unknown form field 'upload'"),
        ({"file": ("a.txt", b"not a png", "text/plain")}, None, 422, "not a readable image"),
        ({"file": ("a.png", b"", "image/png")}, None, 422, "the upload in 'file' is empty"),
        ({"file": ("a.png", png_bomb(), "image/png")}, None, 422, "larger than"),
        ({"file": ("a.png", b"x", "image/png")}, {"center": "maybe"}, 422, "must be true or"),
        (
            [("file", ("a.png", b"x", "image/png")), ("file", ("b.png", b"y", "image/png"))],
            None, 400, "Too many files",
        ),
    ],
)  # fmt: skip
def test_bad_multipart_forms_are_4xx(client, files, data, status, fragment):
    assert_error(client.post("/api/predict", files=files, data=data), status, fragment)


def test_a_multipart_body_without_boundary_is_400(client):
    response = client.post(
        "/api/predict", content=b"--x\r\n", headers={"content-type": "multipart/form-data"}
    )
    assert_error(response, 400, "boundary")


def test_a_body_over_the_limit_is_413_by_its_content_length(client):
    body = b"{" + b" " * SMALL_LIMIT + b"}"
    response = client.post(
        "/api/predict", content=body, headers={"content-type": "application/json"}
    )
    assert_error(response, 413, f"larger than the {SMALL_LIMIT:,} bytes allowed")


def test_a_body_over_the_limit_is_413_without_a_content_length(client):
    def chunks():  # a generator: httpx sends it chunked, with no Content-Length
        for _ in range(3):
            yield b" " * (SMALL_LIMIT // 2)

    response = client.post(
        "/api/predict", content=chunks(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert_error(response, 413, "larger than")


def test_a_multipart_upload_over_the_limit_is_413(client):
    noise = np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    big = png_bytes(noise)  # random pixels do not compress: about 120 KB
    assert len(big) > SMALL_LIMIT
    assert_error(client.post("/api/predict", files={"file": ("a.png", big)}), 413, "larger than")


def test_unknown_paths_and_methods_answer_in_json(client):
    assert_error(client.get("/nope.js"), 404, "no such file: /nope.js")
    assert_error(client.get("/api/nope"), 404, "Not Found")
    assert_error(client.get("/api/predict"), 405, "Method Not Allowed")
    assert_error(client.delete("/api/model"), 405, "Method Not Allowed")


# --- a run on colour pictures: the upload page ---------------------------------------


@pytest.fixture(scope="module")
def colour_run(tmp_path_factory):
    return load_run(shared_colour_run(tmp_path_factory, "cnn1") / "run")


@pytest.fixture(scope="module")
def colour_client(colour_run):
    with TestClient(create_app(colour_run, max_body=SMALL_LIMIT)) as client:
        yield client


def picture_bytes(kind, side=48, seed=0):
    """A test picture of the colour run's data, enlarged to side x side, as `kind` file bytes."""
    image = colour_dataset(1, 20).test.images[seed]
    buffer = io.BytesIO()
    Image.fromarray(image).resize((side, side)).save(buffer, format=kind)
    return buffer.getvalue()


def upload(client, data, name="picture"):
    return client.post("/api/predict", files={"file": (name, data, "application/octet-stream")})


def test_a_colour_run_gets_the_upload_page_and_model_lists_its_classes(colour_client):
    page = served_page(colour_client, "upload")
    assert 'type="file"' in page and 'src="upload.js"' in page and 'id="pad"' not in page
    info = colour_client.get("/api/model").json()
    assert info["model"] == "cnn1" and info["classes"] == list(CLASSES)
    assert info["input_shape"] == [16, 16, 3] and info["page"] == "upload"
    assert info["feature_maps"] is False and info["max_body_bytes"] == SMALL_LIMIT


@pytest.mark.parametrize("kind", ["PNG", "JPEG", "WEBP", "BMP"])
def test_an_uploaded_picture_gets_what_flaxfit_predict_gives_the_same_file(
    colour_client, colour_run, tmp_path, kind
):
    path = tmp_path / f"picture.{kind.lower()}"
    path.write_bytes(picture_bytes(kind, seed=3))
    answer = upload(colour_client, path.read_bytes(), path.name)
    assert answer.status_code == 200, answer.text
    answer = answer.json()
    # What `flaxfit predict --run RUN picture` computes (cli._predict), on the file on disk.
    seen = load_picture(path, colour_run.config.input_shape)
    expected = predict_probabilities(colour_run.model, colour_run.params, seen[None],
                                     batch_stats=colour_run.batch_stats)[0]  # fmt: skip
    assert answer["input"] == seen.tolist()  # 16 x 16 x [r, g, b]
    assert len(answer["probabilities"]) == len(CLASSES)
    assert sum(answer["probabilities"]) == pytest.approx(1, abs=1e-5)
    np.testing.assert_allclose(answer["probabilities"], expected, atol=1e-5)
    assert answer["index"] == int(expected.argmax())
    assert answer["class"] == CLASSES[answer["index"]]


def test_a_grayscale_or_transparent_upload_becomes_the_runs_colour_input(colour_client):
    gray = np.random.default_rng(0).integers(0, 256, (30, 20), dtype=np.uint8)
    answer = upload(colour_client, png_bytes(gray)).json()
    seen = np.asarray(answer["input"])
    assert seen.shape == (16, 16, 3)
    np.testing.assert_array_equal(seen[..., 0], seen[..., 2])  # gray stays gray, in RGB
    clear = png_bytes(np.zeros((8, 8, 4), np.uint8))  # fully transparent: white paper
    assert np.all(np.asarray(upload(colour_client, clear).json()["input"]) == 255)


PICTURE = picture_bytes("PNG")
PHOTO = picture_bytes("JPEG")


@pytest.mark.parametrize(
    "files, fragment",
    [
        ({"file": ("a.png", PICTURE[: len(PICTURE) // 2])}, "'file': not a readable image"),
        ({"file": ("a.jpg", PHOTO[: len(PHOTO) // 2])}, "'file': not a readable image"),
        ({"file": ("a.png", b"\x89PNG\r\n\x1a\n" + bytes(64))}, "not a readable image"),
        ({"file": ("a.jpg", b"hello, not a picture")},
         "not a readable image (not PNG, JPEG, WEBP or BMP)"),
        ({"file": ("a.gif", picture_bytes("GIF"))}, "(not PNG, JPEG, WEBP or BMP)"),
        ({"file": ("a.png", b"")}, "'file' is empty; send a PNG, JPEG, WebP or BMP picture"),
        ({"file": ("a.png", png_bomb())}, "larger than"),
        ({"file": ("a.png", png_bomb(3000, 3000))},
         "3000x3000 pixels is larger than the 4,194,304"),
        ({"file": (None, "a string")},
         "needs a PNG, JPEG, WebP or BMP picture in the field 'file'"),
        ({"feature_maps": (None, "true")},
         "unknown form field 'feature_maps'; the fields are file"),
    ],
)  # fmt: skip
def test_bad_uploads_are_422_naming_the_problem(colour_client, files, fragment):
    assert_error(colour_client.post("/api/predict", files=files), 422, fragment)


def test_an_upload_over_the_limit_is_413(colour_client):
    noise = np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    big = png_bytes(noise)  # random pixels do not compress: about 120 KB
    assert len(big) > SMALL_LIMIT
    assert_error(upload(colour_client, big), 413, f"larger than the {SMALL_LIMIT:,} bytes allowed")


def test_a_colour_run_takes_pictures_not_drawings_and_says_so(colour_client):
    for response in [
        colour_client.post("/api/predict", json={"png": b64(PICTURE)}),
        colour_client.post("/api/predict", content=PICTURE, headers={"content-type": "image/png"}),
    ]:
        assert_error(response, 415, "multipart/form-data with a PNG, JPEG, WebP or BMP picture",
                     "this run's model takes 16x16x3 pictures")  # fmt: skip
