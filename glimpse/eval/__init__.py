"""Retrieval evaluation: metrics over score matrices."""

from .metrics import median_rank, ranks, recall_at_k

__all__ = ["median_rank", "ranks", "recall_at_k"]
