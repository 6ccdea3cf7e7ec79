"""Run an evaluation: embed a dataset once per encoder, then score every configuration on it."""

from __future__ import annotations

import hashlib
import platform
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

from .. import __version__
from ..atomic import file_fingerprint
from ..encoders import Encoder, create_encoder
from .configs import Config, Scorer
from .tasks import Dataset, Items, Judgement, Task
from .embed import EmbeddingCache
from .milvus import MilvusPlace, open_place
from .protocols import HEADLINE, TaskScore, score_task
from .words import WordChannel, ocr_words

#: Called with (what, done, total) as work advances.
Progress = Callable[[str, int, int], None]

LATENCY_QUERIES = 100


@dataclass
class Row:
    """One (encoder, configuration, task) result."""

    encoder: str
    config: Config
    task: str
    score: TaskScore
    latency_ms: dict[str, float]
    bytes_per_image: int
    fit_seconds: float

    def to_dict(self) -> dict:
        return {
            "encoder": self.encoder, "config": self.config.to_dict(), "task": self.task,
            "figures": self.score.figures, "figures_pessimistic": self.score.bounds.get("pessimistic", {}),
            "figures_optimistic": self.score.bounds.get("optimistic", {}), "breakdown": self.score.breakdown,
            "recall_curve": {str(k): v for k, v in self.score.curve.items()},
            "latency_ms": self.latency_ms, "bytes_per_image": self.bytes_per_image,
            "fit_seconds": self.fit_seconds,
        }


@dataclass
class Evaluation:
    dataset: Dataset
    rows: list[Row] = field(default_factory=list)
    fingerprint: str = ""
    seed: int = 0
    seconds: float = 0.0
    command: list[str] = field(default_factory=list)
    backend: str = "local"  # where the configurations searched (glimpse eval --backend)

    def headline(self, task: Task) -> str:
        return HEADLINE[task.protocol]

    def environment(self) -> dict:
        # glimpse's own version from the package: "glimpse" on the registry is another project.
        versions = {"python": platform.python_version(), "platform": platform.platform(), "glimpse": __version__,
                    "backend": self.backend}
        for package in ("numpy", "faiss-cpu", "torch", "Pillow", "transformers", "matplotlib"):
            try:
                versions[package] = metadata.version(package)
            except metadata.PackageNotFoundError:
                pass
        return versions


def evaluate(dataset: Dataset, encoders: list[str | Encoder], configs: list[Config], *, seed: int = 0,
             cache: str | Path | None = None, progress: Progress | None = None,
             adapt: list[str] = (), backend: str = "local") -> Evaluation:
    """Score every configuration of every encoder on every task of ``dataset``.

    ``backend``: ``local`` (the engine's in-process backends), or a Milvus whose collections
    hold the databases: ``milvus`` (Milvus Lite for this run), or a Milvus URI (:mod:`.milvus`).

    ``adapt`` (kinds of :mod:`glimpse.query.adapt`) adds held-out rows to a text→image task:
    see :func:`held_out_adaptation`. Configurations with a ``fusion`` score text→image tasks
    only, with the words read in the images (:mod:`glimpse.eval.words`).
    """
    place = open_place(backend)
    try:
        return _evaluate(dataset, encoders, configs, seed, cache, progress, adapt, place)
    finally:
        if place is not None:
            place.close()


def _evaluate(dataset: Dataset, encoders: list[str | Encoder], configs: list[Config], seed: int,
              cache: str | Path | None, progress: Progress | None, adapt: list[str],
              place: MilvusPlace | None) -> Evaluation:
    started = time.perf_counter()
    result = Evaluation(dataset, seed=seed, command=list(sys.argv), backend=place.describe() if place else "local")
    data_parts = [file_fingerprint(dataset.files, size=16)] if dataset.files else []
    held_out: list[Task] = []
    words: dict[str, list] = {}  # task name -> the words in each database image (OCR), for every encoder
    for number, spec in enumerate(encoders):
        encoder = spec if isinstance(spec, Encoder) else create_encoder(spec)
        store = EmbeddingCache(encoder, cache)
        for task in dataset.tasks:
            queries, q_fp = _embed(store, task, task.queries, f"{task.name}: embedding queries", progress)
            database, d_fp = _embed(store, task, task.database, f"{task.name}: embedding database", progress)
            if number == 0:  # every encoder reads the same files
                data_parts += [q_fp, d_fp]
            fitted: dict = {}
            scorers = []
            text_to_image = (task.queries.kind, task.database.kind) == ("texts", "images")
            if text_to_image and any(c.fusion for c in configs) and task.name not in words:
                step = (lambda done, total: progress(f"{task.name}: reading words (OCR)", done, total)) if progress else None
                words[task.name] = ocr_words(task.database.paths, store.root.parent, progress=step)
            # Collections hold images: codes apply to image databases; text databases are scored exactly.
            for config in configs if task.database.kind == "images" else configs[:1]:
                if config.fusion and not text_to_image:
                    continue
                label = f"{task.name}: {encoder.name} {config.name}"
                if progress:
                    progress(label, 0, len(queries))
                scorer = Scorer.prepare(config, database, seed=seed, fitted=fitted, store=store.root, place=place)
                scorers.append(scorer)
                with _scoring(scorer, queries, task.queries.texts, words.get(task.name)) as scores:
                    score = score_task(task, scores, len(queries))
                # The fusion's latency is the word index's, not the backend's: not measured here.
                latency = {} if config.fusion else scorer.latency_ms(_latency_sample(queries, seed))
                result.rows.append(Row(encoder.name, config, task.name, score, latency,
                                       config.bytes_per_image(encoder.dim), scorer.fit_seconds))
                if progress:
                    progress(label, len(queries), len(queries))
            if adapt and task.protocol == "recall" and (task.queries.kind, task.database.kind) == ("texts", "images"):
                for sub, rows in held_out_adaptation(task, queries, scorers, adapt, seed, encoder, words.get(task.name)):
                    held_out += [sub] if number == 0 else []
                    result.rows += rows
    dataset.tasks += held_out
    result.fingerprint = hashlib.blake2b("|".join(data_parts).encode(), digest_size=16).hexdigest()
    result.seconds = time.perf_counter() - started
    return result


def held_out_adaptation(task: Task, texts: np.ndarray, scorers: list[Scorer], kinds: list[str], seed: int,
                        encoder: Encoder, words: list | None = None) -> list[tuple[Task, list[Row]]]:
    """Text→image before and after ``glimpse adapt``, never scored on its training pairs.

    The images are split in two halves by a seeded permutation; each adapter is trained on
    the first half's (caption, image) pairs, and every row, the unadapted one included, is
    scored on the second half only: its captions against its images (the same gallery), once
    per configuration in ``scorers`` (codes keep the binarizer fitted on every image: no
    caption is seen). Adapted queries go through the map as a collection's text queries do.
    ``words`` (per image, with OCR) serve the configurations with a fusion.
    """
    from ..query.adapt import fit_adapter, held_out_split

    images = scorers[0].database
    owner = np.array([int(p[0]) for p in task.judgements[""].positives])  # caption -> its image
    train = ~held_out_split(len(images), 0.5, seed)
    test_images = np.flatnonzero(~train)
    test_captions = np.flatnonzero(~train[owner])
    position = np.full(len(images), -1)
    position[test_images] = np.arange(len(test_images))
    train_captions = np.flatnonzero(train[owner])
    split = {"rule": f"numpy default_rng({seed}).permutation over the images; the first half trains "
                     "(their captions), the rest are the scored gallery (their captions are the queries)",
             "seed": seed, "train_images": int(train.sum()), "train_captions": len(train_captions),
             "test_images": len(test_images), "test_captions": len(test_captions),
             "test_gallery": [str(task.database.paths[i]) for i in test_images]}
    galleries = [scorer.subset(test_images) for scorer in scorers]
    out = []
    for kind in ["none", *kinds]:
        t0 = time.perf_counter()
        queries = texts[test_captions]
        if kind != "none":
            adapter = fit_adapter(texts[train_captions], images[owner[train_captions]], kind=kind, seed=seed)
            queries = adapter(queries)
        seconds = time.perf_counter() - t0
        sub = Task(f"text→image, held-out half, {'no adaptation' if kind == 'none' else 'adapted: ' + kind}",
                   Items("texts", texts=[task.queries.texts[c] for c in test_captions]),
                   Items("images", paths=[task.database.paths[i] for i in test_images]), "recall",
                   {"": Judgement([np.array([position[owner[c]]]) for c in test_captions])},
                   options={"split": split})
        rows = []
        gallery_words = None if words is None else [words[i] for i in test_images]
        for gallery in galleries:
            with _scoring(gallery, queries, sub.queries.texts, gallery_words) as scores:
                score = score_task(sub, scores, len(queries))
            rows.append(Row(encoder.name, gallery.config, sub.name, score, {},
                            gallery.config.bytes_per_image(encoder.dim), seconds))
        out.append((sub, rows))
    return out


@contextmanager
def _scoring(scorer: Scorer, queries: np.ndarray, texts: list[str] | None,
             words: list | None) -> Iterator[Callable[[np.ndarray], np.ndarray]]:
    """``scores(query rows)`` of a configuration, fused with the words when it has a fusion."""
    if not scorer.config.fusion:
        yield lambda rows: scorer.scores(queries[rows])
        return
    channel = WordChannel(words, scorer.database.shape[1])
    try:
        yield lambda rows: np.stack([
            channel.fused(texts[r], base, scorer.config.fusion, lambda ids: scorer.database[ids], queries[r])
            for r, base in zip(rows, scorer.scores(queries[rows]))])
    finally:
        channel.close()


def _latency_sample(queries: np.ndarray, seed: int) -> np.ndarray:
    pick = np.random.default_rng(seed).permutation(len(queries))[:LATENCY_QUERIES]
    return queries[np.sort(pick)]


def _embed(store: EmbeddingCache, task: Task, items: Items, what: str,
           progress: Progress | None) -> tuple[np.ndarray, str]:
    step = (lambda done, total: progress(what, done, total)) if progress else None
    if items.kind == "images":
        return store.images(items.paths, step)
    if items.kind == "texts":
        return store.texts(items.texts, step)
    if items.kind == "generated":
        return store.generated(items.key, len(items), items.make, step)
    if items.kind == "composed":
        return _composed(store, items, task.options.get("alpha"), step)
    raise ValueError(f"unknown item kind {items.kind!r}")


def _composed(store: EmbeddingCache, items: Items, alpha: float | None, step) -> tuple[np.ndarray, str]:
    """Reference image + text, fused the way the collection fuses composed queries."""
    try:
        from ..query.compose import compose
    except ImportError:  # pragma: no cover - until composed queries land
        raise ValueError("composed triplets need composed search (glimpse.query.compose)") from None
    images, image_fp = store.images(items.paths, step)
    texts, text_fp = store.texts(items.texts, step)
    fused = np.stack([compose(images[r], t) if alpha is None else compose(images[r], t, float(alpha))
                      for r, t in zip(items.refs, texts)])
    return fused.astype(np.float32), f"{image_fp}+{text_fp}"
