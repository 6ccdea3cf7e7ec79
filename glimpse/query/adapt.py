"""Adapting text queries to a collection: a map learnt from its own image-caption pairs.

The default encoder meets text and images only through 1000 ImageNet class names, so words a
collection's captions use often land far from its photos. Given pairs (caption, image), a map
sends a text vector towards the vectors of the images it describes; text queries then go
through it. Two kinds, measured in ``benchmarks/QUERY_NOTES.md`` and ``benchmarks/QUALITY_NOTES.md``:

* ``contrastive`` (default): ``q = norm(t @ (I + W))`` where ``W`` starts at zero and is
  trained with an InfoNCE loss (each caption against all training images) and an L2 penalty on
  ``W`` (:class:`Contrastive`). It can use the images' visual dimensions too, which no text
  vector has.
* ``ridge``: ``q = norm((1 - g) * t + g * norm((t - mean) @ W))``, with ``W`` the closed-form
  ridge regression from centred text vectors to centred image vectors.

Only the input dimensions where text vectors are ever non-zero are kept (for lite0-minilm the
384 MiniLM dimensions), so a map is ``384 x dim`` floats.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

import numpy as np

from ..atomic import write_atomic
from ..storage.arrays import read_arrays
from ..encoders import l2_normalize

KINDS = ("contrastive", "ridge")
#: Bump when the stored arrays change meaning; older maps are then refused, not misread.
FORMAT = 1

RIDGE_LAMBDA = 1.0
RIDGE_MIX = 0.4
#: Fewer pairs than this teach nothing reliable.
MIN_PAIRS = 20


@dataclass(frozen=True)
class Contrastive:
    """How the contrastive map is trained: full-batch Adam steps, the InfoNCE temperature and the
    L2 penalty on ``W`` that keeps queries near the plain encoder's. Chosen by cross-validation
    inside a training half of captioned-dev (benchmarks/adapt.py; were 0.05 and 0.03): on photos
    never trained on about as good, and the captioned photos, which every collection searches too,
    no longer draw the queries that describe other photos (benchmarks/QUALITY_NOTES.md)."""

    steps: int = 200
    temperature: float = 0.03
    penalty: float = 0.1
    lr: float = 3e-3


@dataclass(frozen=True)
class TextAdapter:
    kind: str
    dims: np.ndarray  # int64: the text-vector dimensions the map reads
    matrix: np.ndarray  # float32 (len(dims), dim)
    mean: np.ndarray  # float32 (len(dims),): ridge centring (zeros for contrastive)
    mix: float  # ridge: weight of the mapped vector against the original

    def __call__(self, texts: np.ndarray) -> np.ndarray:
        """Map float32 (n, dim) text vectors; returns unit vectors."""
        t = np.asarray(texts, dtype=np.float32)
        x = t[:, self.dims]
        if self.kind == "contrastive":
            return l2_normalize(x @ self.matrix)
        return l2_normalize((1.0 - self.mix) * l2_normalize(t) + self.mix * l2_normalize((x - self.mean) @ self.matrix))

    def save(self, path: Path) -> None:
        """Write atomically (temporary file, then rename)."""
        write_atomic(path, lambda f: np.savez(f, format=FORMAT, kind=self.kind, dims=self.dims, matrix=self.matrix,
                                              mean=self.mean, mix=self.mix))

    @classmethod
    def load(cls, path: Path) -> TextAdapter:
        z = read_arrays(path, ("format", "kind", "dims", "matrix", "mean", "mix"),
                        "run `glimpse adapt` again, or `glimpse adapt --remove`")
        if int(z["format"]) != FORMAT:
            raise ValueError(f"{path} holds an adaptation in format {int(z['format'])}, not {FORMAT}: "
                             "run `glimpse adapt` again")
        return cls(str(z["kind"]), z["dims"], z["matrix"], z["mean"], float(z["mix"]))


def fit_adapter(texts: np.ndarray, images: np.ndarray, kind: str = "contrastive", seed: int = 0,
                progress: Callable[[int, int], None] | None = None, training: Contrastive = Contrastive()) -> TextAdapter:
    """Learn a map from caption vectors ``texts`` (n, dim) to their images' vectors (n, dim)."""
    if kind not in KINDS:
        raise ValueError(f"unknown adaptation {kind!r}: use one of {', '.join(KINDS)}")
    texts = np.asarray(texts, dtype=np.float32)
    images = np.asarray(images, dtype=np.float32)
    if len(texts) != len(images):
        raise ValueError("give one image vector per caption vector")
    if len(texts) < MIN_PAIRS:
        raise ValueError(f"{len(texts)} captioned images are too few to adapt to; give at least {MIN_PAIRS}")
    dims = np.flatnonzero(np.abs(texts).sum(axis=0) > 0).astype(np.int64)
    x = texts[:, dims]
    if kind == "ridge":
        mean, target = x.mean(axis=0), images - images.mean(axis=0)
        xc = x - mean
        matrix = np.linalg.solve(xc.T @ xc + RIDGE_LAMBDA * np.eye(len(dims)), xc.T @ target)
        return TextAdapter(kind, dims, matrix.astype(np.float32), mean.astype(np.float32), RIDGE_MIX)
    return TextAdapter(kind, dims, _contrastive(x, images, dims, seed, progress, training), np.zeros(len(dims), np.float32), 1.0)


def _contrastive(x: np.ndarray, images: np.ndarray, dims: np.ndarray, seed: int, progress,
                 training: Contrastive) -> np.ndarray:
    import torch

    torch.manual_seed(seed)
    # One thread: the problem is small, and extra threads spin against whatever else is running
    # (measured 40x slower for a toy set on a busy 2-core machine).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(torch, x, images, dims, progress, training)
    finally:
        torch.set_num_threads(threads)


def _train(torch, x: np.ndarray, images: np.ndarray, dims: np.ndarray, progress, training: Contrastive) -> np.ndarray:
    xt, yt = torch.from_numpy(x), torch.from_numpy(images)
    base = torch.zeros(len(dims), images.shape[1])
    base[torch.arange(len(dims)), torch.from_numpy(dims)] = 1.0  # identity: start from the plain text query
    delta = torch.zeros_like(base, requires_grad=True)
    opt = torch.optim.Adam([delta], lr=training.lr)
    target = torch.arange(len(x))
    for step in range(training.steps):
        q = torch.nn.functional.normalize(xt @ (base + delta), dim=1)
        loss = torch.nn.functional.cross_entropy(q @ yt.T / training.temperature, target)
        loss = loss + training.penalty * (delta**2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if progress:
            progress(step + 1, training.steps)
    return (base + delta).detach().numpy().astype(np.float32)


def held_out_split(count: int, share: float, seed: int) -> np.ndarray:
    """Which of ``count`` images to keep out of training to score an adaptation on: bool (count,).

    The images in ``numpy default_rng(seed).permutation(count)`` order: the first
    ``floor(count * (1 - share))`` train, the rest (a ``share`` of them) are held out. Every
    caption of an image goes where its image goes, so no held-out image was seen in training.
    """
    order = np.random.default_rng(seed).permutation(count)
    held = np.ones(count, bool)
    held[order[: int(count * (1.0 - share) + 1e-9)]] = False  # + 1e-9: 10 * 0.7 is 6.999...
    return held


def read_tsv(path: Path, what: str) -> tuple[list[str], list[dict[str, str | None]]]:
    """The header and rows of a tab-separated UTF-8 file; ValueError naming ``what`` and ``path`` if unreadable."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:  # a byte order mark (Excel) is no part of a name
            reader = csv.DictReader(f, delimiter="\t")
            return list(reader.fieldnames or ()), list(reader)
    except OSError as exc:
        raise ValueError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{what} {path} are not UTF-8 text (byte {exc.start}): save the file as UTF-8") from None
    except csv.Error as exc:  # e.g. a field over csv's 128 KiB limit
        raise ValueError(f"{what} {path} are not a readable TSV file: {exc}") from None


def read_captions(path: str | os.PathLike) -> list[tuple[Path, str]]:
    """(image path, caption) pairs from a TSV with ``image`` and ``caption`` columns.

    Relative image paths are relative to the TSV's folder (the captioned-dev layout). A field
    may be quoted the way csv writers quote one that holds quotes (``"it reads ""EXIT"" here"``): 74 of
    captioned-dev's captions are; a quote inside an unquoted field stays as it is."""
    path = Path(path).expanduser()
    fields, rows = read_tsv(path, "captions")
    if not {"image", "caption"} <= set(fields):
        raise ValueError(f"{path}: expected a tab-separated file with a header row 'image<TAB>caption'")
    base = path.absolute().parent
    return [((base / r["image"]).absolute(), r["caption"].strip()) for r in rows if r["image"] and (r["caption"] or "").strip()]


def sidecar_caption(image_path: str | os.PathLike) -> str | None:
    """A description kept next to an image: ``photo.jpg.txt`` / ``photo.txt``, or the
    ``dc:description`` (else ``dc:title``) of an XMP sidecar ``photo.jpg.xmp`` / ``photo.xmp``
    (darktable, Lightroom, digiKam)."""
    p = Path(image_path)
    for candidate in (p.with_name(p.name + ".txt"), p.with_suffix(".txt")):
        try:
            text = candidate.read_text(encoding="utf-8-sig").strip()
        except (OSError, UnicodeDecodeError):
            continue
        if text:
            return text
    for candidate in (p.with_name(p.name + ".xmp"), p.with_suffix(".xmp")):
        if text := _xmp_description(candidate):
            return text
    return None


_DC = "{http://purl.org/dc/elements/1.1/}"
_RDF = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"


def _xmp_description(path: Path) -> str | None:
    """dc:description (or dc:title) of an XMP file, the x-default language first."""
    try:
        root = ElementTree.parse(path).getroot()
    except (OSError, ElementTree.ParseError):
        return None
    for field in ("description", "title"):
        for element in root.iter(_DC + field):
            items = list(element.iter(_RDF + "li"))
            items.sort(key=lambda li: li.get(_XML_LANG) != "x-default")
            for text in [li.text for li in items] + [element.text]:
                if text and text.strip():
                    return text.strip()
        for description in root.iter(_RDF + "Description"):  # the attribute form
            if (text := description.get(_DC + field)) and text.strip():
                return text.strip()
    return None

