"""What collection runs report: progress callbacks, index and adaptation reports, stats."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


#: Called with (files done, files to do) while ``index``/``add`` run.
ProgressFn = Callable[[int, int], None]


@dataclass
class IndexReport:
    """What one ``add``/``index`` run did, by file."""

    scanned: int = 0
    embedded: int = 0  # images that went through the model
    linked: int = 0  # new or changed files whose content was already known
    unchanged: int = 0  # same size and mtime as last time: not read
    skipped: int = 0  # unreadable now, or still the same unreadable file as last time
    removed: int = 0  # files gone from disk, dropped from the collection
    errors: list[tuple[str, str]] = field(default_factory=list)  # (path, reason) new this run

    @property
    def indexed(self) -> int:
        return self.embedded + self.linked


@dataclass
class AdaptReport:
    """What one ``adapt`` run learnt from; R@10 on the held-out captioned images before/after."""

    kind: str
    pairs: int  # captions used (captioned images found in the collection)
    missing: int  # captions whose image the collection does not hold
    version: int = 0
    holdout_images: int = 0
    before: float | None = None
    after: float | None = None
    seconds: float = 0.0


@dataclass
class RepairReport:
    """What one ``repair`` run found and did, by item id."""

    checked: int  # stored vectors whose length was checked
    damaged: list[int]  # items whose vector was damaged (or cut off the file)
    repaired: list[int] = field(default_factory=list)  # those derived again and stored
    left: list[tuple[int, str]] = field(default_factory=list)  # (item, its key or path): not derivable here


@dataclass(frozen=True)
class CollectionStats:
    path: str
    encoder: str
    encoder_version: str
    dim: int
    files: int
    images: int
    errors: int
    disk_bytes: int
    vector_bytes: int
    roots: list[str]
    codes: dict | None  # binary-code settings when codes are configured, else exact float search
    created: float | None
    updated: float | None
    excluded: list[str] = field(default_factory=list)  # removed paths that later index runs leave out
    upgrade: dict | None = None  # an encoder upgrade under way (glimpse.upgrade.state.summary), else None
