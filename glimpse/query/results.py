"""What a search returns."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class SearchResult:
    id: int  # item id: stable for the life of the content in the collection
    path: str  # the first path (in sort order) of the files that hold this content
    score: float  # cosine similarity to the query, in [-1, 1]

    def to_dict(self) -> dict:
        return asdict(self)
