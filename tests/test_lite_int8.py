"""The int8 image graph: a fixed calibration set, a cache key that names the quantisation and
the head, a quantised graph that computes what the fp32 one does (on a tiny convolution net),
uint8 pixels fed straight to it, and a head run inside the graph."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from glimpse.encoders import lite_onnx  # noqa: E402


class TinyNet(torch.nn.Module):
    """Stands in for EfficientNet-Lite: ``extract_features`` on normalised NCHW images."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.head = torch.nn.Conv2d(8, 16, 1)

    def extract_features(self, x):
        return torch.nn.functional.relu6(self.head(torch.nn.functional.relu6(self.stem(x))))


def test_calibration_images_are_the_same_bits_every_time():
    images = lite_onnx.calibration_images(8, 64)
    assert images.shape == (8, 64, 64, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(images, lite_onnx.calibration_images(8, 64))
    assert images.std() > 30  # pictures, not blank frames
    # Pinned: a change to the generator must come with a new QUANTISATION (the cache key).
    assert hashlib.blake2b(images.tobytes(), digest_size=8).hexdigest() == PINNED


PINNED = "e4ebe39992469492"


def test_graph_key_names_the_precision_and_the_quantisation(monkeypatch):
    fp32, int8 = (lite_onnx.graph_key("w", 32, 127.0, 128.0, int8) for int8 in (False, True))
    assert fp32 != int8
    monkeypatch.setattr(lite_onnx, "QUANTISATION", lite_onnx.QUANTISATION + "-other")
    assert lite_onnx.graph_key("w", 32, 127.0, 128.0, True) not in (fp32, int8)
    assert lite_onnx.graph_key("w", 32, 127.0, 128.0, False) == fp32
    assert lite_onnx.graph_key("other weights", 32, 127.0, 128.0, False) != fp32


def test_graph_key_names_the_head():
    keys = {lite_onnx.graph_key("w", 32, 127.0, 128.0, int8, head) for int8 in (False, True) for head in ("", "a", "b")}
    assert len(keys) == 6


def test_int8_graph_is_quantised_cached_and_close_to_fp32(tmp_path):
    import onnx

    net = TinyNet().eval()
    side, batch = 32, lite_onnx.calibration_images(lite_onnx.MICRO_BATCH, 32)
    fp32 = lite_onnx.OnnxImageModel(lambda: (net, None), side, 127.0, 128.0, tmp_path / "fp32.onnx")(batch)[0]
    int8 = lite_onnx.OnnxImageModel(lambda: (net, None), side, 127.0, 128.0, tmp_path / "int8.onnx", int8=True)(batch)[0]
    ops = {node.op_type for node in onnx.load(tmp_path / "int8.onnx").graph.node}
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    assert int8.shape == fp32.shape
    cos = np.sum(int8.reshape(len(batch), -1) * fp32.reshape(len(batch), -1), axis=1) / (
        np.linalg.norm(int8.reshape(len(batch), -1), axis=1) * np.linalg.norm(fp32.reshape(len(batch), -1), axis=1))
    assert cos.min() > 0.98


class DepthwiseNet(TinyNet):
    """TinyNet with a depthwise convolution between its two dense ones, as in EfficientNet-Lite."""

    def __init__(self) -> None:
        super().__init__()
        self.depthwise = torch.nn.Conv2d(8, 8, 3, padding=1, groups=8)

    def extract_features(self, x):
        x = torch.nn.functional.relu6(self.depthwise(torch.nn.functional.relu6(self.stem(x))))
        return torch.nn.functional.relu6(self.head(x))


def test_dense_convolutions_get_7_bit_weights_depthwise_ones_8():
    import onnx
    from onnx import numpy_helper

    side = 32
    graph = onnx.load_from_string(lite_onnx.quantize_graph(
        lite_onnx.export_graph(DepthwiseNet().eval(), side, 127.0, 128.0), side, 127.0, 128.0)).graph
    weights = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    dequantised = {node.output[0]: weights[node.input[0]] for node in graph.node
                   if node.op_type == "DequantizeLinear" and node.input[0] in weights}
    peaks = {next((a.i for a in node.attribute if a.name == "group"), 1): np.abs(dequantised[node.input[1]]).max()
             for node in graph.node if node.op_type == "Conv"}
    # Without VNNI, x86's uint8 x int8 kernel sums pairs of products in int16: 2 * 255 * 64 fits, 2 * 255 * 127 not.
    assert peaks[1] <= 64 and peaks[8] == 127


def _run(graph: bytes, batch: np.ndarray) -> list[np.ndarray]:
    import onnxruntime as ort

    return ort.InferenceSession(graph, providers=["CPUExecutionProvider"]).run(None, {"pixels": batch})


def test_int8_graph_takes_the_pixels_as_its_quantised_input(monkeypatch):
    import onnx

    captured = {}
    monkeypatch.setattr(lite_onnx, "_pixels_as_quantised", lambda graph, mean, std: captured.setdefault("qdq", graph))
    net, side = TinyNet().eval(), 32
    lite_onnx.quantize_graph(lite_onnx.export_graph(net, side, 127.0, 128.0), side, 127.0, 128.0)
    monkeypatch.undo()
    direct = lite_onnx._pixels_as_quantised(captured["qdq"], 127.0, 128.0)
    # No float pass over the input before the first convolution: the uint8 pixels are its input.
    ops = [node.op_type for node in onnx.load_from_string(direct).graph.node]
    before = [node.op_type for node in onnx.load_from_string(captured["qdq"]).graph.node]
    assert {"Cast", "Sub", "Div"} <= set(before) and not {"Cast", "Sub", "Div"} & set(ops)
    assert ops.count("QuantizeLinear") == before.count("QuantizeLinear") - 1
    batch = lite_onnx.calibration_images(lite_onnx.MICRO_BATCH, side)
    np.testing.assert_array_equal(_run(direct, batch)[0], _run(captured["qdq"], batch)[0])


class TinyHead(torch.nn.Module):
    """A head like the default encoder's: pooled features, a linear layer, a softmax."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(16, 5)

    def forward(self, fmap):
        pooled = fmap.mean(dim=(2, 3))
        return pooled, torch.softmax(self.fc(pooled), dim=1)


@pytest.mark.parametrize("int8", [False, True])
def test_head_runs_inside_the_graph(tmp_path, int8):
    net, head, side = TinyNet().eval(), TinyHead().eval(), 32
    batch = lite_onnx.calibration_images(lite_onnx.MICRO_BATCH, side)
    features = lite_onnx.OnnxImageModel(lambda: (net, None), side, 127.0, 128.0, tmp_path / "features.onnx", int8)
    both = lite_onnx.OnnxImageModel(lambda: (net, head), side, 127.0, 128.0, tmp_path / "head.onnx", int8, ("pooled", "p"))
    with torch.no_grad():
        want = head(torch.from_numpy(features(batch)[0]))
    pooled, p = both(batch)
    np.testing.assert_allclose(pooled, want[0].numpy(), atol=1e-6)
    np.testing.assert_allclose(p, want[1].numpy(), atol=1e-6)
    np.testing.assert_array_equal(both(batch, ["p"])[0], p)


@pytest.mark.parametrize("machine, flags, expected", [
    ("x86_64", "fpu sse2 avx2 fma", "fp32"),  # int16 pair sums saturate without VNNI
    ("x86_64", "fpu avx2 avx512f avx512_vnni", "int8"),
    ("x86_64", "fpu avx2 avx_vnni", "int8"),
    ("aarch64", "fp asimd", "int8"),  # ARM's dot-product kernels do not saturate
])
def test_default_precision_is_fp32_only_on_x86_without_vnni(tmp_path, monkeypatch, machine, flags, expected):
    from glimpse.encoders import runtime

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: a CPU\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n")
    monkeypatch.setattr(runtime.platform, "machine", lambda: machine)
    assert runtime.default_precision(cpuinfo) == expected
    assert runtime.default_precision(tmp_path / "absent") == "int8"  # flags unknown (not Linux)
