"""Evaluation harness: score search configurations on retrieval benchmarks, write a report.

``datasets`` reads benchmark files into tasks, ``embed`` caches their vectors per encoder,
``configs`` scores exact float and binary-code configurations, ``protocols`` and the engine's ``glimpse.metrics``
turn rankings into figures, ``runner`` ties them together and ``report`` writes JSON,
Markdown and HTML. ``glimpse eval ADAPTER PATH`` (``cli``) is the command line.
"""

from ..metrics import median_rank, ranks, recall_at_k

__all__ = ["median_rank", "ranks", "recall_at_k"]
