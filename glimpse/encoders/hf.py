"""The ``hf`` encoder: a Hugging Face transformers ``CLIPModel`` or ``SiglipModel``.

``model`` is a hub id (``openai/clip-vit-base-patch32``, downloaded by transformers when
online) or a local folder saved with ``save_pretrained`` (config, weights, tokenizer and
``preprocessor_config.json``). Images are preprocessed by glimpse from that processor
config, without transformers' image processors (and without torchvision).
"""

from __future__ import annotations

import os
from typing import Any

from PIL import Image

from ..extras import require
from .towers import (Precision, Preprocess, TowerEncoder, absolute_path, first_line, hub_cache, hub_mode,
                     is_path, offline_reason)

MODEL_TYPES = ("clip", "siglip")
_OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
_OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


class HfEncoder(TowerEncoder):
    """A transformers CLIP or SigLIP model (see the module docstring for ``model``)."""

    name = "hf"

    def __init__(
        self,
        model: str | None = None,
        *,
        device: str | None = None,
        precision: Precision = "fp32",
        num_threads: int | None = None,
    ) -> None:
        if not model:
            raise ValueError("the hf encoder needs --model: a Hugging Face hub id such as "
                             "openai/clip-vit-base-patch32, or a folder saved with save_pretrained")
        local = is_path(model)
        self.model = absolute_path(model) if local else model
        if local and not os.path.isdir(self.model):
            raise ValueError(f"no model folder at {self.model}: give a folder saved with save_pretrained, or a hub id")
        require("clip", "the hf encoder")
        super().__init__(device, precision, num_threads)
        try:
            import torch
            from transformers import AutoConfig, AutoModel, AutoTokenizer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # a "Loading weights" bar on stderr is noise in CLI output
            offline = {"local_files_only": local or offline_reason() is not None}
            with hub_mode(remote=not local):
                config = AutoConfig.from_pretrained(self.model, **offline)
                if config.model_type in MODEL_TYPES:
                    # fp32 whatever the checkpoint stores: transformers 5 keeps a checkpoint's dtype.
                    net = AutoModel.from_pretrained(self.model, dtype=torch.float32, **offline)
                    self._tokenizer = AutoTokenizer.from_pretrained(self.model, **offline)
                    processor = _processor_config(self.model, offline)
        except Exception as exc:
            raise self._load_error(exc, local) from None
        if config.model_type not in MODEL_TYPES:
            raise ValueError(f"{self.model} is a {config.model_type!r} model; the hf encoder takes CLIP and SigLIP "
                             "models (CLIPModel, SiglipModel)")
        self._siglip = config.model_type == "siglip"
        self._max_tokens = int(config.text_config.max_position_embeddings)
        self._finish(net, _preprocess(config, processor, self._siglip))

    @property
    def options(self) -> dict[str, str]:
        return {"model": self.model}

    def _load_error(self, exc: BaseException, local: bool) -> ValueError:
        if local:
            return ValueError(f"cannot load the Hugging Face model in {self.model}: {first_line(exc)}")
        why = offline_reason() or first_line(exc)
        folder = self.model.rsplit("/", 1)[-1]
        return ValueError(
            f"Hugging Face model {self.model} is not on this machine (looked in the Hugging Face cache "
            f"{hub_cache()}) and could not be downloaded ({why}): on a machine with internet run "
            f"`hf download {self.model} --local-dir {folder}`, copy the folder here and pass "
            f"--model ./{folder} (Python: model='./{folder}')")

    def _image_features(self, pixels: Any) -> Any:
        return _tensor(self._model.get_image_features(pixel_values=pixels))

    def _text_features(self, texts: list[str]) -> Any:
        # SigLIP was trained on text padded to its full length (it pools the last position).
        padding = "max_length" if self._siglip else True
        tokens = self._tokenizer(texts, padding=padding, truncation=True, max_length=self._max_tokens,
                                 return_tensors="pt")
        inputs = {k: v.to(self.device) for k, v in tokens.items() if k in ("input_ids", "attention_mask")}
        return _tensor(self._model.get_text_features(**inputs))


def _tensor(out: Any) -> Any:
    """transformers 5.x returns the features, later releases an output object holding them."""
    return out if hasattr(out, "dim") else out.pooler_output


def _processor_config(model: str, offline: dict) -> dict:
    from transformers.image_processing_utils import ImageProcessingMixin

    try:
        config, _ = ImageProcessingMixin.get_image_processor_dict(model, **offline)
    except OSError:  # no preprocessor_config.json: the model type's defaults apply
        return {}
    return config


def _preprocess(config: Any, processor: dict, siglip: bool) -> Preprocess:
    """The model's image processor (resize, crop, rescale, normalise) as a Preprocess."""
    side = int(config.vision_config.image_size)
    if abs(float(processor.get("rescale_factor", 1 / 255)) - 1 / 255) > 1e-9 or not processor.get("do_rescale", True):
        raise ValueError("this model's image processor does not rescale pixels by 1/255, which glimpse does")
    mean = tuple(processor.get("image_mean", (0.5,) * 3 if siglip else _OPENAI_MEAN))
    std = tuple(processor.get("image_std", (0.5,) * 3 if siglip else _OPENAI_STD))
    if not processor.get("do_normalize", True):
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    resample = Image.Resampling(int(processor.get("resample", Image.Resampling.BICUBIC)))
    size = processor.get("size") or ({"height": side, "width": side} if siglip else {"shortest_edge": side})
    crop = processor.get("crop_size") if processor.get("do_center_crop", not siglip) else None
    if "shortest_edge" in size:
        short = int(size["shortest_edge"])
        crop = crop or {"height": short, "width": short}
        return Preprocess(int(crop["height"]), int(crop["width"]), mean, std, "shortest", resample,
                          crop_round=False, short=short)
    if crop and (crop["height"], crop["width"]) != (size["height"], size["width"]):
        raise ValueError("this model's image processor crops after a fixed-size resize, which glimpse does not do")
    return Preprocess(int(size["height"]), int(size["width"]), mean, std, "squash", resample, crop_round=False)
