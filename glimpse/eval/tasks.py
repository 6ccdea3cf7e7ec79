"""What an evaluation runs on: tasks (queries, database, relevance judgements) grouped in datasets.

The adapters in :mod:`glimpse.eval.datasets` build these from benchmark files; the runner,
protocols and report read them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..ingest import DecodeError, decode_image


class DatasetError(ValueError):
    """A dataset's files are missing or malformed; the message names the expected layout."""


@dataclass
class Items:
    """One side of a task. ``kind``: images (files), texts, generated (``make(i)``), composed."""

    kind: str
    paths: list[Path] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    make: Callable[[int], Image.Image] | None = None
    key: list[str] = field(default_factory=list)  # what ``make`` depends on (cache key)
    count: int = 0
    refs: list[int] = field(default_factory=list)  # composed: index into ``paths`` per query
    names: list[str] = field(default_factory=list)  # generated: what each picture is, for the report

    def __len__(self) -> int:
        if self.kind == "images":
            return len(self.paths)
        if self.kind == "texts":
            return len(self.texts)
        if self.kind == "composed":
            return len(self.refs)
        return self.count

    def label(self, i: int) -> str:
        if self.kind == "images":
            return self.paths[i].name
        if self.kind == "texts":
            return self.texts[i]
        if self.kind == "composed":
            return f"{self.paths[self.refs[i]].name} + “{self.texts[i]}”"
        return self.names[i] if i < len(self.names) else f"#{i}"

    def picture(self, i: int) -> Image.Image | None:
        """The image shown for item ``i`` in the report (None for a text)."""
        if self.kind == "generated":
            return self.make(i)
        path = self.paths[self.refs[i]] if self.kind == "composed" else self.paths[i] if self.kind == "images" else None
        return None if path is None else open_image(path)


@dataclass
class Judgement:
    """Per query: relevant database indices, and indices removed from its ranking."""

    positives: list[np.ndarray]
    ignore: list[np.ndarray] | None = None


@dataclass
class Task:
    name: str  # "text→image"
    queries: Items
    database: Items
    protocol: str  # recall | copy | groups | revisitop | hashing | composed (see protocols)
    judgements: dict[str, Judgement]  # the first is the main one ("", or M for revisitop)
    options: dict = field(default_factory=dict)
    breakdown: dict[str, np.ndarray] = field(default_factory=dict)  # named query subsets


@dataclass
class Dataset:
    adapter: str
    root: Path
    tasks: list[Task]
    files: list[Path]  # annotation files, fingerprinted in the report
    info: dict = field(default_factory=dict)


def open_image(path: Path, target: int | None = None) -> Image.Image:
    try:
        return decode_image(Path(path).read_bytes(), target=target)
    except DecodeError as exc:  # a query made from it (an edited copy, a crop) cannot be either
        raise DatasetError(f"image {path} cannot be decoded ({exc}): fix it or move it out of the dataset") from None


