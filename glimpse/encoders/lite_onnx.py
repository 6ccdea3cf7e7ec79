"""EfficientNet-Lite on ONNX Runtime, always in micro-batches of one size.

One graph does everything from uint8 pixels to the image's vector: the convolutions, then an
optional fp32 *head* (pooling, classifier, whatever the encoder computes from the feature map),
so no torch operation runs per batch (torch's idle threads spun against ONNX Runtime's: under
load the head cost 3.3 CPU ms/img on two torch threads, 0.33 on one, about 5 the convolutions).

At ``int8`` (the default) the exported graph is quantised once per machine by ONNX Runtime's
static quantiser: QDQ format, uint8 activations, int8 weights per output channel, activation
ranges calibrated on :func:`calibration_images` (procedural pictures generated in code, the same
bits on every machine: nothing downloaded, no user data). About half the CPU time of fp32 per
image; retrieval quality measured in the README.

ONNX Runtime runs the Lite0 feature extractor at fp32 in about the CPU time per image of torch
with bf16 autocast, and ingest end to end 4.2x as fast on the shared 2-core development machine under
load, where torch's threads wait on each other (``benchmarks/ingest.py``, README). The graph is
exported from the loaded torch model once per machine and cached as a file, keyed by the checkpoint
file's bytes, the input side, the head and the library versions, so running a cached graph needs no torch.

Each run uses one thread, and :class:`OnnxImageModel` may be called from several threads at once,
one micro-batch each: ONNX Runtime's two threads on one run wait on each other at each of the
graph's ~60 operators, two runs side by side do not.

Its output for an image depends on the shape of the batch it ran in (measured: a batch of 7
rounds differently from a batch of 8 or 16), so every run holds exactly :data:`MICRO_BATCH`
images, the last one padded. An image's features are then the same bits whatever batch it
came in, at whatever position and beside whichever images: a collection upgraded or filled
with another ``--batch-size`` holds the vectors a fresh one would.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import write_atomic

#: Images per run of the graph. 8 costs the same CPU time per image as 16 or 32 here and pads
#: a lone query image with only 7 blanks.
MICRO_BATCH = 8

#: Bump when the exported graph changes (inputs, outputs, normalisation) so cached files are not reused.
GRAPH_VERSION = "2"

_OPSET = 17

#: How the int8 graph is made, part of its cache key: change it with any setting below or
#: with :func:`calibration_images`, so graphs quantised otherwise are not reused.
QUANTISATION = "qdq-u8-s8-per-channel-7bit-dense-minmax-procedural-v1"
#: Calibration images: 64 measured as good as 128 (and as 64 real photos) on captioned-dev.
CALIBRATION_IMAGES = 64
_CALIBRATION_SEED = 20261201


def _feature_module(model: Any, mean: float, std: float) -> Any:
    """uint8 NHWC pixels -> the feature map before pooling, as one torch module to export."""
    from torch import nn

    class Features(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, pixels: Any) -> Any:
            x = pixels.permute(0, 3, 1, 2).float().sub(mean).div(std)
            return self.model.extract_features(x)

    return Features().eval()


def _export(module: Any, example: Any, input_name: str, output_names: list[str]) -> bytes:
    import torch

    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
        torch.onnx.export(module, (example,), buffer, input_names=[input_name], output_names=output_names,
                          opset_version=_OPSET, dynamo=False)
    return buffer.getvalue()


def export_graph(model: Any, side: int, mean: float, std: float) -> bytes:
    """The ONNX graph of ``model``'s feature extractor for ``MICRO_BATCH`` images of ``side`` px."""
    import torch

    example = torch.zeros((MICRO_BATCH, side, side, 3), dtype=torch.uint8)
    return _export(_feature_module(model, mean, std), example, "pixels", ["features"])


def attach_head(graph: bytes, head: Any, fmap: Any, outputs: list[str]) -> bytes:
    """``graph`` followed by ``head`` (a torch module: the feature map -> ``outputs``), one fp32
    graph after the (possibly quantised) convolutions, with only ``outputs`` as outputs.
    ``fmap``: an example feature map (the exporter's own output shape can be symbolic)."""
    import onnx
    from onnx import compose

    features = onnx.load_from_string(graph)
    tail = onnx.load_from_string(_export(head.eval(), fmap, "fmap", outputs))
    # The quantiser may have raised the IR version; both halves are plain opset-17 ONNX.
    tail.ir_version = features.ir_version
    tail = compose.add_prefix(tail, "head", rename_inputs=False, rename_outputs=False)  # no name clashes
    merged = compose.merge_models(features, tail, io_map=[("features", "fmap")])
    kept = [info for info in merged.graph.value_info if info.name != "features"]  # the symbolic shape
    del merged.graph.value_info[:]
    merged.graph.value_info.extend(kept)
    return merged.SerializeToString()


def _smooth(rng: np.random.Generator, cells: int, side: int, channels: int) -> np.ndarray:
    """A smooth random field in [0, 255]: a coarse grid of random values, smoothstep-interpolated."""
    grid = rng.integers(0, 256, (cells + 1, cells + 1, channels)).astype(np.float64)
    pos = (np.arange(side) + 0.5) * (cells / side)
    i = np.minimum(pos.astype(np.int64), cells - 1)
    f = pos - i
    f = f * f * (3.0 - 2.0 * f)
    rows = grid[i] * (1.0 - f)[:, None, None] + grid[i + 1] * f[:, None, None]
    return rows[:, i] * (1.0 - f)[None, :, None] + rows[:, i + 1] * f[None, :, None]


def calibration_images(count: int, side: int) -> np.ndarray:
    """``count`` procedural pictures, uint8 (count, side, side, 3): the int8 calibration set.

    Photo-like statistics without photos: smooth shading, weak colour, texture at two scales and
    a few flat shapes with hard edges. Only seeded integers and element-wise float arithmetic
    (no reductions, no transcendental functions), so every machine gets the same bits.
    """
    out = np.empty((count, side, side, 3), np.uint8)
    y, x = np.mgrid[0:side, 0:side] / side
    for n in range(count):
        rng = np.random.default_rng([_CALIBRATION_SEED, n])
        img = _smooth(rng, int(rng.integers(2, 6)), side, 1)
        img = img + (_smooth(rng, int(rng.integers(2, 6)), side, 3) - 128.0) * (int(rng.integers(1, 6)) / 8)
        img = img + (_smooth(rng, int(rng.integers(8, 40)), side, 1) - 128.0) * (int(rng.integers(0, 5)) / 8)
        img = img + rng.integers(-128, 128, (side, side, 1)) * (int(rng.integers(0, 3)) / 8)
        for _ in range(int(rng.integers(0, 12))):
            cx, cy, rx, ry = rng.integers(0, 1024, 4) / 1024
            kind = int(rng.integers(0, 3))
            if kind == 0:  # an ellipse
                inside = ((x - cx) / (rx / 2 + 0.02)) ** 2 + ((y - cy) / (ry / 2 + 0.02)) ** 2 <= 1.0
            elif kind == 1:  # a rectangle
                inside = (abs(x - cx) <= rx / 2) & (abs(y - cy) <= ry / 2)
            else:  # a band across the picture, at any angle
                a, b = rx - 0.5, ry - 0.5
                inside = abs(a * (x - cx) + b * (y - cy)) <= (abs(a) + abs(b)) * int(rng.integers(1, 40)) / 400
            grey = int(rng.integers(0, 256))
            img = np.where(inside[:, :, None], grey + rng.integers(-60, 61, 3), img)
        out[n] = np.clip(np.rint(img), 0, 255)
    return out


class _Calibration:
    """ONNX Runtime's calibration data reader over :func:`calibration_images`, ``MICRO_BATCH`` at a time."""

    def __init__(self, side: int) -> None:
        images = calibration_images(CALIBRATION_IMAGES, side)
        self._batches: Iterator[np.ndarray] = iter(np.split(images, CALIBRATION_IMAGES // MICRO_BATCH))

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {"pixels": batch}


def quantize_graph(graph: bytes, side: int, mean: float, std: float) -> bytes:
    """The int8 (QDQ) version of an exported fp32 graph, calibrated on :func:`calibration_images`."""
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="glimpse-int8-") as tmp:
        fused, quantised = Path(tmp) / "fused.onnx", Path(tmp) / "int8.onnx"
        (Path(tmp) / "fp32.onnx").write_bytes(graph)
        # ONNX Runtime's notes about constants it drops while optimising say nothing to act on;
        # the level is process-wide, so it goes back to ONNX Runtime's default (warnings) after.
        ort.set_default_logger_severity(3)
        try:
            # Fold the explicit "same" padding into the convolutions first: quantised, each Pad
            # would cost a dequantise and a quantise (measured 7.9 against 4.7 CPU ms/img).
            quant_pre_process(Path(tmp) / "fp32.onnx", fused, skip_symbolic_shape=True)
            # 7-bit weights for the dense (not depthwise) convolutions: on x86 without VNNI their
            # uint8 x int8 kernel adds products in pairs into int16, which saturates with 8-bit
            # weights (int8 vectors at median cosine 0.925 against fp32, 0.984 with this, on captioned-dev).
            # Depthwise ones keep 8 bits: their kernel does not saturate (7 bits there measured 0.976).
            seven_bit = {weight: [{"reduce_range": True, "axis": 0}] for weight in _dense_conv_weights(fused)}
            quantize_static(fused, quantised, _Calibration(side), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax,
                            extra_options={"TensorQuantOverrides": seven_bit})
        finally:
            ort.set_default_logger_severity(2)
        return _pixels_as_quantised(quantised.read_bytes(), mean, std)


def _dense_conv_weights(path: Path) -> list[str]:
    """The weights of the graph's convolutions that are not grouped (depthwise ones are)."""
    import onnx

    return [node.input[1] for node in onnx.load(path).graph.node if node.op_type == "Conv"
            and next((a.i for a in node.attribute if a.name == "group"), 1) == 1]


def _pixels_as_quantised(graph: bytes, mean: float, std: float) -> bytes:
    """Feed the uint8 pixels straight to the first convolution as its quantised input.

    ``(pixel - mean) / std`` is exactly the uint8 tensor ``pixel`` with zero point ``mean`` and
    scale ``1 / std``, so the graph's float Cast, Sub, Div and QuantizeLinear over every input
    value (5% of the int8 graph's time) are dropped; the convolutions see the same numbers.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(graph)
    nodes = model.graph.node
    producer = {out: node for node in nodes for out in node.output}
    quantise = next(n for n in nodes if n.op_type == "QuantizeLinear" and _chain(producer, n.input[0]))
    div = producer[quantise.input[0]]
    sub = producer[div.input[0]]
    cast = producer[sub.input[0]]
    pixels = cast.input[0]
    for init in model.graph.initializer:
        if init.name == quantise.input[1]:
            init.CopyFrom(numpy_helper.from_array(np.array(1.0 / std, np.float32), init.name))
        elif init.name == quantise.input[2]:
            init.CopyFrom(numpy_helper.from_array(np.array(mean, np.uint8), init.name))
    dropped = {id(n) for n in (quantise, div, sub, cast)}
    kept = [n for n in nodes if id(n) not in dropped]
    for node in kept:
        node.input[:] = [pixels if name == quantise.output[0] else name for name in node.input]
    del model.graph.node[:]
    model.graph.node.extend(kept)
    used = {name for node in kept for name in node.input}
    constants = [init for init in model.graph.initializer if init.name in used]  # not the dropped Sub's, Div's
    del model.graph.initializer[:]
    model.graph.initializer.extend(constants)
    return model.SerializeToString()


def _chain(producer: dict[str, Any], name: str) -> bool:
    """Whether ``name`` is Div(Sub(Cast(x))): the exported input normalisation."""
    for op in ("Div", "Sub", "Cast"):
        node = producer.get(name)
        if node is None or node.op_type != op:
            return False
        name = node.input[0]
    return True


def _version(dist: str) -> str:
    """An installed library's version, read from its metadata rather than by importing it (torch:
    about 4 CPU s)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:  # installed under another distribution name (onnxruntime-gpu)
        return importlib.import_module(dist).__version__


def graph_key(weights: str, side: int, mean: float, std: float, int8: bool = False, head: str = "") -> str:
    """What the exported graph depends on: the weights (``weights``: :func:`glimpse.atomic.file_fingerprint`
    of the checkpoint), the input, the batch, the head (``head``: a fingerprint of whatever it
    computes with besides the checkpoint), the exporter, and at int8 the quantisation settings
    and the quantiser's version."""
    parts = (GRAPH_VERSION, weights, f"{side}|{mean}|{std}|{MICRO_BATCH}", head, _version("torch"), _version("onnx"))
    if int8:
        parts += (QUANTISATION, str(CALIBRATION_IMAGES), _version("onnxruntime"))
    return hashlib.blake2b("\n".join(parts).encode(), digest_size=8).hexdigest()


class OnnxImageModel:
    """Runs the exported (at ``int8``: quantised) image graph on exactly ``MICRO_BATCH`` uint8 images.

    Without ``head`` the graph's output is the feature map (``"features"``); with one, the
    head's ``outputs``. One thread per run; safe to call from several threads at once.
    """

    def __init__(self, load: Callable[[], tuple[Any, Any]], side: int, mean: float, std: float, cache_file: Path,
                 int8: bool = False, outputs: tuple[str, ...] = ()) -> None:
        """``load`` returns the torch model and its head (or None); it is called only when
        ``cache_file`` holds no graph yet, so a cached graph runs without torch."""
        import onnxruntime as ort

        graph = _cached(cache_file)
        if graph is None:
            model, head = load()
            graph = export_graph(model, side, mean, std)
            if int8:
                graph = quantize_graph(graph, side, mean, std)
            if head is not None:
                graph = attach_head(graph, head, _example_features(model, side, mean, std), list(outputs))
            with contextlib.suppress(OSError):  # an unwritable cache only costs exporting again
                write_atomic(cache_file, graph)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # not its notes about the int8 graph's unused constants
        self._session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])

    def __call__(self, pixels: np.ndarray, outputs: list[str] | None = None) -> list[np.ndarray]:
        """The graph's ``outputs`` (default all) for ``MICRO_BATCH`` images."""
        if pixels.shape[0] != MICRO_BATCH:
            raise ValueError(f"expected {MICRO_BATCH} images, got {pixels.shape[0]}")
        return self._session.run(outputs, {"pixels": np.ascontiguousarray(pixels, dtype=np.uint8)})


def _example_features(model: Any, side: int, mean: float, std: float) -> Any:
    import torch

    with torch.no_grad():
        return torch.zeros_like(_feature_module(model, mean, std)(torch.zeros((MICRO_BATCH, side, side, 3),
                                                                               dtype=torch.uint8)))


def _cached(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None
