"""EfficientNet-Lite's convolutions on ONNX Runtime, always in micro-batches of one size.

ONNX Runtime's CPU kernels run the Lite0 feature extractor in well under half of torch's CPU
time (bf16 autocast) on the 2-core development machine, at fp32 (``benchmarks/ingest.py``). The
graph is exported from the loaded torch model once per machine and cached as a file (about
13 MB for Lite0), keyed by the weights, the input side and the library versions.

Its output for an image depends on the shape of the batch it ran in (measured: a batch of 7
rounds differently from a batch of 8 or 16), so every run holds exactly :data:`MICRO_BATCH`
images, the last one padded. An image's features are then the same bits whatever batch it
came in, at whatever position and beside whichever images: a collection upgraded or filled
with another ``--batch-size`` holds the vectors a fresh one would.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import write_atomic

#: Images per run of the graph. 8 costs the same CPU time per image as 16 or 32 here and pads
#: a lone query image with only 7 blanks.
MICRO_BATCH = 8

#: Bump when the exported graph changes (inputs, outputs, normalisation) so cached files are not reused.
GRAPH_VERSION = "1"

_OPSET = 17


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


def export_graph(model: Any, side: int, mean: float, std: float) -> bytes:
    """The ONNX graph of ``model``'s feature extractor for ``MICRO_BATCH`` images of ``side`` px."""
    import torch

    example = torch.zeros((MICRO_BATCH, side, side, 3), dtype=torch.uint8)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
        torch.onnx.export(_feature_module(model, mean, std), (example,), buffer, input_names=["pixels"],
                          output_names=["features"], opset_version=_OPSET, dynamo=False)
    return buffer.getvalue()


def graph_key(model: Any, side: int, mean: float, std: float) -> str:
    """What the exported graph depends on: the weights, the input, the batch, the exporter."""
    import onnx
    import torch

    from .towers import weights_fingerprint

    parts = (GRAPH_VERSION, f"{side}|{mean}|{std}|{MICRO_BATCH}", torch.__version__, onnx.__version__)
    return hashlib.blake2b(weights_fingerprint(model, *parts).encode(), digest_size=8).hexdigest()


class OnnxFeatures:
    """Runs the exported feature extractor; call with exactly ``MICRO_BATCH`` uint8 images."""

    def __init__(self, model: Any, side: int, mean: float, std: float, cache_file: Path, num_threads: int) -> None:
        import onnxruntime as ort

        graph = _cached(cache_file)
        if graph is None:
            graph = export_graph(model, side, mean, std)
            with contextlib.suppress(OSError):  # an unwritable cache only costs exporting again
                write_atomic(cache_file, graph)
        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
        # Threads that spin between runs take the cores the decode threads need (and other
        # processes' on a shared machine); the runs are long enough that waking costs nothing.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        if pixels.shape[0] != MICRO_BATCH:
            raise ValueError(f"expected {MICRO_BATCH} images, got {pixels.shape[0]}")
        return self._session.run(None, {"pixels": np.ascontiguousarray(pixels, dtype=np.uint8)})[0]


def _cached(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None
