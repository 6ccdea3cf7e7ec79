"""Shared machinery of the CLIP-style (two-tower) encoders: ``open_clip`` and ``hf``.

Both load a pretrained image tower and text tower that already share one space, so an
encoder here is: the library's model, glimpse's own Pillow/numpy preprocessing (run in the
ingest decode threads, matching the library's transform), and the model on batches.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import socket
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from .base import Encoder, l2_normalize
from .runtime import configure_torch_threads, torch_threads, tune_malloc

#: Bump when glimpse's handling (preprocessing, pooling, tokenising) changes vectors.
IMPLEMENTATION = "1"

Precision = Literal["fp32", "bf16"]


@dataclass(frozen=True)
class Preprocess:
    """One model's image transform, done with Pillow and numpy.

    ``resize``: "shortest" scales the short side to ``short`` (default: the larger target
    side) then centre-crops, "squash" scales to the target ignoring the aspect ratio.
    ``crop_round``: torchvision (open_clip) rounds the crop offset, transformers floors it;
    one pixel of shift is enough to move the vectors of a small model.
    """

    height: int
    width: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: Literal["shortest", "squash"] = "shortest"
    resample: Image.Resampling = Image.Resampling.BICUBIC
    crop_round: bool = True
    short: int = 0

    def __call__(self, image: Image.Image) -> np.ndarray:
        """One image -> uint8 (height, width, 3). Thread-safe: runs in decode workers."""
        if image.mode != "RGB":
            image = image.convert("RGB")
        th, tw = self.height, self.width
        if self.resize == "squash":
            if image.size != (tw, th):
                image = image.resize((tw, th), self.resample)
            return np.asarray(image, dtype=np.uint8)
        w, h = image.size
        side = self.short or max(th, tw)
        # The short side to ``side``, the long one truncated, as both libraries do it.
        nw, nh = (side, int(side * h / w)) if w <= h else (int(side * w / h), side)
        if (nw, nh) != (w, h):
            image = image.resize((nw, nh), self.resample)
        offset = (lambda d: int(round(d / 2.0))) if self.crop_round else (lambda d: d // 2)
        left, top = offset(nw - tw), offset(nh - th)
        return np.asarray(image, dtype=np.uint8)[top : top + th, left : left + tw]

    def fingerprint(self) -> str:
        return repr((self.height, self.width, self.mean, self.std, self.resize, int(self.resample), self.crop_round,
                     self.short))


def weights_fingerprint(model: Any, *extra: str) -> str:
    """A short id of a model's weights: changes with any checkpoint, not with the file holding it.

    Hashes every tensor's name and shape and an evenly strided sample of up to 4096 of its
    values (as float32): 0.14 s for ViT-B-32's 151 M parameters on a busy 2-core machine, and
    independent of the file format, path or dtype the weights were stored in.
    """
    import torch

    digest = hashlib.blake2b(digest_size=8)
    for part in extra:
        digest.update(part.encode())
    with torch.no_grad():
        for name, tensor in sorted(model.state_dict().items()):
            flat = tensor.detach().reshape(-1)
            step = max(1, flat.numel() // 4096)
            digest.update(f"{name}{tuple(tensor.shape)}".encode())
            digest.update(flat[::step].to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def hub_offline() -> bool:
    """True when the user asked Hugging Face libraries to stay off the network."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "on", "yes", "true"):
        return True
    try:
        import huggingface_hub.constants as constants

        return bool(constants.HF_HUB_OFFLINE)
    except ImportError:
        return False


@functools.cache
def hub_unreachable() -> str | None:
    """Why the Hugging Face hub cannot be reached (None when it can), checked once per process.

    Without a network, huggingface_hub retries each file five times with back-off (about
    25 s a file); one connection attempt with a short timeout tells at once.
    """
    try:
        import huggingface_hub.constants as constants

        endpoint = urllib.parse.urlsplit(constants.ENDPOINT)
    except ImportError:
        return None
    host, port = endpoint.hostname or "huggingface.co", endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=3).close()
    except OSError as exc:
        return f"no network: cannot reach {host} ({exc.strerror or type(exc).__name__})"
    return None


def offline_reason() -> str | None:
    """Why downloads are off: the user's HF_HUB_OFFLINE, or no route to the hub; None when on."""
    return "offline mode (HF_HUB_OFFLINE=1)" if hub_offline() else hub_unreachable()


@contextlib.contextmanager
def hub_mode(remote: bool) -> Iterator[None]:
    """Load from the local cache only when downloads are off or not wanted (a local model:
    ``remote`` False), and keep libraries' logs quiet.

    huggingface_hub reads ``HF_HUB_OFFLINE`` once, at import: its constant is set too, for
    this block only, so other encoders in the process may still download. Failures come back
    as one glimpse sentence, so the libraries' own error logs would only repeat it.
    """
    import huggingface_hub.constants as constants

    saved = constants.HF_HUB_OFFLINE, os.environ.get("HF_HUB_OFFLINE")
    if not remote or offline_reason():
        constants.HF_HUB_OFFLINE = True
        os.environ["HF_HUB_OFFLINE"] = "1"
    logging.disable(logging.ERROR)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)
        constants.HF_HUB_OFFLINE = saved[0]
        if saved[1] is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = saved[1]


def hub_cache() -> str:
    try:
        import huggingface_hub.constants as constants

        return str(constants.HF_HUB_CACHE)
    except ImportError:
        return "~/.cache/huggingface/hub"


def first_line(exc: BaseException) -> str:
    """The first sentence of an exception's message, to quote inside a glimpse sentence."""
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__).split(". ")[0].rstrip(".")


def is_path(value: str) -> bool:
    """Whether a model/weights option names a local path rather than a hub id or tag."""
    return value.startswith((".", "/", "~")) or Path(value).expanduser().exists()


def absolute_path(value: str) -> str:
    return str(Path(value).expanduser().absolute())


def resolve_device(device: str | None) -> str:
    """``None`` picks CUDA when torch sees a GPU, else the CPU; anything else is checked now."""
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}: use cpu, cuda or cuda:N") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} is not available: torch sees no CUDA GPU here (use --device cpu)")
    if kind not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r} is not supported: use cpu, cuda or cuda:N")
    return device


class TowerEncoder(Encoder):
    """Base of the CLIP-style encoders: the model is loaded at construction.

    Subclasses set ``name``, load the model in ``__init__`` (then call ``_finish``) and
    implement ``_image_features`` (normalised pixels -> features) and ``_text_features``.

    Args:
        device: "cpu", "cuda" or "cuda:N"; default CUDA when present, else the CPU.
        precision: "fp32" (default) or "bf16" (autocast on the image batches; see the README
            for when it pays off). Texts are always encoded in fp32.
        num_threads: torch intra-op threads on the CPU; default one per usable core.
    """

    batch_size = 32

    def __init__(self, device: str | None = None, precision: Precision = "fp32", num_threads: int | None = None):
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', not {precision!r}")
        tune_malloc()  # before torch allocates its first large buffers
        configure_torch_threads(num_threads)
        self.device = resolve_device(device)
        self.precision: Precision = precision
        self.preprocess: Preprocess
        self._model: Any = None
        self._mean: Any = None
        self._std: Any = None

    @property
    def options(self) -> dict[str, str]:  # pragma: no cover - every subclass overrides it
        raise NotImplementedError

    def _finish(self, model: Any, preprocess: Preprocess, *identity: str) -> None:
        """Fingerprint the loaded weights, move the model to its device and find the output size."""
        import torch

        self.preprocess = preprocess
        self.image_size = min(preprocess.height, preprocess.width)
        self.version = f"{IMPLEMENTATION}-{weights_fingerprint(model, preprocess.fingerprint(), *identity)}"
        self._model = model.eval().to(self.device)
        shape = (1, 3, 1, 1)
        self._mean = torch.tensor(preprocess.mean, dtype=torch.float32, device=self.device).view(shape)
        self._std = torch.tensor(preprocess.std, dtype=torch.float32, device=self.device).view(shape)
        self.dim = int(self._encode_texts([""]).shape[1])

    @contextlib.contextmanager
    def _inference(self, autocast: bool) -> Iterator[None]:
        import torch

        device_type = torch.device(self.device).type
        with torch.inference_mode(), torch.autocast(device_type, dtype=torch.bfloat16, enabled=autocast):
            yield

    def _image_features(self, pixels: Any) -> Any:
        raise NotImplementedError

    def _text_features(self, texts: list[str]) -> Any:
        raise NotImplementedError

    def prepare(self, image: Image.Image) -> np.ndarray:
        return self.preprocess(image)

    def encode_prepared(self, batch: np.ndarray) -> np.ndarray:
        import torch

        batch = np.asarray(batch)
        if len(batch) == 0:
            return np.zeros((0, self.dim), np.float32)
        with self._inference(self.precision == "bf16"):
            x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.uint8)).to(self.device)
            x = x.permute(0, 3, 1, 2).float().div_(255.0).sub_(self._mean).div_(self._std)
            out = self._image_features(x).float()
        return l2_normalize(out.cpu().numpy())

    def _encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        with self._inference(False):
            out = self._text_features(list(texts)).float()
        return l2_normalize(out.cpu().numpy())

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        if not len(texts):
            return np.zeros((0, self.dim), np.float32)
        if len(texts) == 1 and self.device == "cpu":
            # One query is too small to split across threads: with every core busy, torch's
            # default threads made one text search 50x slower (524 ms against 9.6 ms).
            with torch_threads(1):
                return self._encode_texts(texts)
        return self._encode_texts(texts)
