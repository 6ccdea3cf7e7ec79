"""Optional features and the pip extra that installs each: one sentence when one is missing."""

from __future__ import annotations

import importlib

#: The distribution name on the package registry (``glimpse`` there is an unrelated project).
DISTRIBUTION = "glimpse-retrieval"

#: The modules require() imports to check that an extra is installed (pyproject.toml lists its libraries).
MODULES = {
    "server": ("fastapi", "uvicorn", "python_multipart"),
    "eval": ("matplotlib",),
    "demo": ("skimage",),
    "clip": ("transformers", "ftfy"),
    "ocr": ("rapidocr_onnxruntime",),
    "milvus": ("pymilvus",),
}


class MissingExtraError(ImportError):
    """An optional feature was used without the extra that installs its libraries."""


def missing_extra(feature: str, extra: str) -> str:
    """The sentence that tells a user which extra ``feature`` needs."""
    return f"{feature} needs the {extra} extra: pip install '{DISTRIBUTION}[{extra}]'"


def require(extra: str, feature: str) -> None:
    """Import the modules of ``extra``, or raise :class:`MissingExtraError` naming the extra to install."""
    for module in MODULES[extra]:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            raise MissingExtraError(missing_extra(feature, extra), name=exc.name) from exc
