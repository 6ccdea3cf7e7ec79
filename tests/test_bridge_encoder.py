"""The real default encoder (lite0-minilm) on scikit-image photographs."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image, ImageOps

from glimpse.encoders.runtime import default_precision

pytestmark = pytest.mark.slow

skdata = pytest.importorskip("skimage.data")

NAMES = [
    "chelsea", "coffee", "rocket", "astronaut", "stereo_motorcycle", "hubble_deep_field",
    "immunohistochemistry", "colorwheel", "retina", "logo",
]


def _photo(name: str) -> Image.Image:
    arr = getattr(skdata, name)()
    if name == "stereo_motorcycle":
        arr = arr[0]
    im = Image.fromarray(arr)
    return im.convert("RGB")  # logo is RGBA


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("glimpse-cache")


@pytest.fixture(scope="module")
def encoder(cache_dir):
    from glimpse.encoders import create_encoder

    return create_encoder("lite0-minilm", cache_dir=cache_dir)


@pytest.fixture(scope="module")
def photos():
    return {name: _photo(name) for name in NAMES}


@pytest.fixture(scope="module")
def image_vectors(encoder, photos):
    return encoder.encode_images(list(photos.values()))


def test_shapes_and_normalised(encoder, image_vectors):
    texts = encoder.encode_texts(["a cat", "a cup of coffee", ""])
    for v in (image_vectors, texts):
        assert v.dtype == np.float32
        assert v.shape[1] == encoder.dim == 1280 + 384
        np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert encoder.encode_texts([]).shape == (0, encoder.dim)
    assert encoder.encode_prepared(np.zeros((0, 224, 224, 3), np.uint8)).shape == (0, encoder.dim)


def test_prepare_is_uint8_224(encoder):
    wide = Image.new("RGB", (640, 300), (10, 20, 30))
    out = encoder.prepare(wide)
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8
    assert encoder.prepare(Image.new("L", (100, 150))).shape == (224, 224, 3)


@pytest.mark.parametrize("query, expected", [("a cat", "chelsea"), ("a cup of coffee", "coffee")])
def test_text_finds_photo(encoder, image_vectors, query, expected):
    scores = (encoder.encode_texts([query]) @ image_vectors.T)[0]
    assert NAMES[int(np.argmax(scores))] == expected


def _copy(im: Image.Image) -> Image.Image:
    w, h = im.size
    cropped = im.crop((w // 10, h // 10, w - w // 10, h - h // 12))
    buf = io.BytesIO()
    cropped.save(buf, "JPEG", quality=40)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


@pytest.mark.parametrize("name", ["chelsea", "coffee", "rocket", "astronaut", "stereo_motorcycle"])
def test_copy_finds_its_original(encoder, photos, image_vectors, name):
    query = encoder.encode_images([_copy(photos[name])])
    assert NAMES[int(np.argmax((query @ image_vectors.T)[0]))] == name


@pytest.fixture(scope="module")
def precisions(encoder, cache_dir):
    """The default encoder at each precision (the default one is ``encoder``)."""
    from glimpse.encoders import create_encoder
    from glimpse.encoders.bridge import PRECISIONS

    return {p: encoder if p == encoder.precision else create_encoder("lite0-minilm", precision=p, cache_dir=cache_dir)
            for p in PRECISIONS}


# int8 on x86 without VNNI (7-bit dense weights there): median 0.978, min 0.853 (the dark Hubble
# deep field); 8-bit weights saturated there (median 0.935, min 0.808).
@pytest.mark.parametrize("precision, floor, median", [("bf16", 0.99, 0.99), ("int8", 0.85, 0.97)])
def test_close_to_fp32(precisions, photos, precision, floor, median):
    fp32, other = precisions["fp32"], precisions[precision]
    batch = np.stack([fp32.prepare(im) for im in photos.values()])
    cos = np.sum(fp32.encode_prepared(batch) * other.encode_prepared(batch), axis=1)
    assert cos.min() >= floor and np.median(cos) >= median
    # Texts are always fp32: identical whatever the image precision.
    np.testing.assert_allclose(fp32.encode_texts(["a dog"]), other.encode_texts(["a dog"]), atol=1e-6)


@pytest.mark.parametrize("precision", ["int8", "fp32", "bf16"])
def test_vectors_do_not_depend_on_the_batch(precisions, photos, precision):
    # 20 different images (each photo, flipped, rotated, grey), three micro-batches of 8, the last one short:
    # the same bits all at once, in batches of 7 (other positions and other neighbours) and alone, for
    # images from every slot of a micro-batch. (Each call pads to a whole micro-batch, about 2.6 s at bf16 on
    # an AVX2 CPU: every image alone took 97 s of CI.)
    enc = precisions[precision]
    images = [f(im) for f in (lambda im: im, ImageOps.mirror, lambda im: im.rotate(90, expand=True),
                              lambda im: ImageOps.grayscale(im).convert("RGB")) for im in photos.values()][:20]
    batch = np.stack([enc.prepare(im) for im in images])
    whole = enc.encode_prepared(batch)
    sevens = np.concatenate([enc.encode_prepared(batch[i : i + 7]) for i in range(0, len(batch), 7)])
    np.testing.assert_array_equal(sevens, whole)
    for i in (0, 3, 7, 10, 13, 19):  # slots 0, 3, 7, 2, 5 and 3 of the last, short micro-batch
        np.testing.assert_array_equal(enc.encode_prepared(batch[i : i + 1]), whole[i : i + 1])


def test_prompt_vectors_cached_on_disk(encoder, image_vectors, cache_dir):
    from glimpse.encoders.bridge import BridgeEncoder

    files = list(cache_dir.glob("minilm-v*-prompts-*.npy"))
    assert len(files) == 1
    fresh = BridgeEncoder(cache_dir=cache_dir)
    np.testing.assert_array_equal(fresh.class_vectors(), encoder.class_vectors())
    assert fresh._text_model is None  # the cache spared loading MiniLM


def test_image_graph_exported_once_and_cached_on_disk(encoder, image_vectors, cache_dir, photos, monkeypatch):
    from glimpse.encoders import lite_onnx
    from glimpse.encoders.bridge import BridgeEncoder

    suffix = "-int8" if encoder.precision == "int8" else ""  # the default precision depends on the CPU
    graph = re.compile(rf"lite0-minilm-v\d+-image{suffix}-[0-9a-f]+\.onnx")
    assert len([p for p in cache_dir.iterdir() if graph.fullmatch(p.name)]) == 1

    def no_export(*args):
        raise AssertionError("the cached graph should have been used")

    monkeypatch.setattr(lite_onnx, "export_graph", no_export)
    monkeypatch.setattr(lite_onnx, "quantize_graph", no_export)
    fresh = BridgeEncoder(cache_dir=cache_dir)
    fresh._image_model = encoder._image()  # loading the weights again would only cost time
    np.testing.assert_array_equal(fresh.encode_images(list(photos.values())), image_vectors)


def test_cached_graph_runs_without_torch(encoder, image_vectors, cache_dir, photos, monkeypatch):
    # An image query's cold start: importing torch and loading the checkpoint cost about 5 CPU s,
    # once only needed to name the cached graph.
    from glimpse.encoders.bridge import BridgeEncoder

    def no_torch(*args):
        raise AssertionError("the cached graph should run without torch")

    monkeypatch.setattr(BridgeEncoder, "_image", no_torch)
    monkeypatch.setattr(BridgeEncoder, "_init_torch", no_torch)
    fresh = BridgeEncoder(cache_dir=cache_dir)
    np.testing.assert_array_equal(fresh.encode_images([photos["coffee"]]), image_vectors[[NAMES.index("coffee")]])


def test_image_batches_run_no_torch_operation(encoder, photos, image_vectors, monkeypatch):
    # Pooling, the classifier and ConSE run inside the ONNX graph: torch's idle threads would
    # otherwise spin against ONNX Runtime's on every batch.
    import torch

    def no_torch(*args, **kwargs):
        raise AssertionError("a torch operation ran on an image batch")

    monkeypatch.setattr(encoder._image()._fc, "forward", no_torch)
    monkeypatch.setattr(torch.nn.functional, "normalize", no_torch)
    monkeypatch.setattr(torch, "softmax", no_torch)
    np.testing.assert_array_equal(encoder.encode_images(list(photos.values())), image_vectors)


def test_graph_file_names_the_head(encoder, monkeypatch):
    from glimpse.encoders import bridge

    classes = encoder.class_vectors()
    key = bridge._head_fingerprint(classes)
    assert bridge._head_fingerprint(classes.copy()) == key
    assert bridge._head_fingerprint(classes + np.float32(1e-3)) != key
    monkeypatch.setattr(bridge, "TEMPERATURE", bridge.TEMPERATURE + 0.5)
    assert bridge._head_fingerprint(classes) != key


def test_unwritable_cache_is_tolerated(encoder, tmp_path):
    from glimpse.encoders.bridge import BridgeEncoder

    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    enc = BridgeEncoder(cache_dir=blocker / "sub")
    computed = []

    def prompts(classes):  # the prompt vectors themselves are checked elsewhere (30 CPU s each)
        computed.append(len(classes))
        return np.load(encoder._prompt_cache_path(classes))

    enc._compute_prompt_vectors = prompts
    np.testing.assert_allclose(enc.class_vectors(), encoder.class_vectors(), atol=1e-5)
    enc._class_vectors = None
    enc.class_vectors()
    assert computed == [1000, 1000]  # nothing could be cached, so the second call recomputed


def test_text_query_does_not_load_image_model(encoder, cache_dir):
    from glimpse.encoders.bridge import BridgeEncoder

    enc = BridgeEncoder(cache_dir=cache_dir)
    enc._text_model = encoder._text()  # loading MiniLM again would only cost time
    enc.encode_texts(["a rocket"])
    assert enc._image_model is None


def test_info_and_hints(encoder):
    assert encoder.info.name == "lite0-minilm"
    assert encoder.version
    assert encoder.precision == default_precision()
    assert encoder.batch_size > 0
    with pytest.raises(ValueError, match="precision must be one of int8, fp32, bf16, not 'fp16'"):
        from glimpse.encoders.bridge import BridgeEncoder

        BridgeEncoder(precision="fp16")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lite must be one of"):
        from glimpse.encoders.bridge import BridgeEncoder

        BridgeEncoder(lite=3)


# lite1 on torch (bf16) skips a graph export: the weights are what is under test.
@pytest.mark.parametrize("lite, side, precision", [(1, 240, "bf16"), (2, 260, "int8")])
def test_larger_lite_variants_load_their_own_weights(encoder, image_vectors, photos, cache_dir, lite, side, precision,
                                                     monkeypatch):
    from glimpse.encoders import create_encoder
    from glimpse.encoders.bridge import BridgeEncoder, load_class_names

    def no_prompts(*args):
        raise AssertionError("lite0's cached prompt vectors should have been reused")

    monkeypatch.setattr(BridgeEncoder, "_compute_prompt_vectors", no_prompts)
    enc = create_encoder(f"lite{lite}-minilm", cache_dir=cache_dir, precision=precision)
    assert enc.name == f"lite{lite}-minilm" and enc.image_size == side
    batch = np.stack([enc.prepare(photos[name]) for name in ("coffee", "chelsea")])
    assert batch.shape == (2, side, side, 3)
    _, logits = enc.image_features(batch)
    names = load_class_names()
    top = [names[i] for i in np.argmax(logits, axis=1)]
    assert top[0] == "espresso" and "cat" in top[1]
