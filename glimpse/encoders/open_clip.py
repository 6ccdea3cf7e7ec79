"""The ``open_clip`` encoder: any open_clip architecture with weights from a tag, the hub or a file.

``model`` names the architecture (``ViT-B-32``), an ``hf-hub:org/name`` repository or a
folder holding ``open_clip_config.json``; ``pretrained`` names the weights: an open_clip tag
(``laion2b_s34b_b79k``, downloaded by open_clip when online), ``hf-hub:org/name``, a
checkpoint file or a folder. Without torchvision, open_clip is imported with a stand-in
(see :func:`import_open_clip`): glimpse never runs open_clip's torchvision transforms.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib.machinery
import importlib.util
import os
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from PIL import Image

from ..extras import MissingExtraError, missing_extra, require
from .towers import (Precision, Preprocess, TowerEncoder, absolute_path, first_line, hub_cache, hub_mode,
                     is_path, offline_reason)

HUB = "hf-hub:"
LOCAL_DIR = "local-dir:"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".npz")
#: What open_clip imports from torchvision when its package loads: its own transforms
#: (glimpse preprocesses with Pillow) and a batch-norm layer used only in training.
_TORCHVISION_MODULES = ("torchvision", "torchvision.transforms", "torchvision.transforms.functional",
                        "torchvision.ops", "torchvision.ops.misc")


class _Unavailable(type):
    """A torchvision class stand-in: attribute reads give names (enum members), calls fail."""

    def __getattr__(cls, attr: str) -> str:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return f"{cls.__name__}.{attr}"


def _stand_in(name: str) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
    module.__path__ = []

    def unavailable(*_args, **_kwargs):
        raise RuntimeError("torchvision is not installed: glimpse preprocesses images itself and never calls this")

    def member(attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _Unavailable(attr, (), {"__init__": unavailable})

    module.__getattr__ = member  # type: ignore[method-assign]
    return module


@contextlib.contextmanager
def _torchvision_stand_in() -> Iterator[None]:
    """Serve stand-in torchvision modules while open_clip imports, and remove them after.

    Scoped to the import so nothing else in the process sees them; open_clip keeps its
    references, which only its transforms and training code would ever call.
    """
    with contextlib.suppress(ImportError):
        # transformers caches whether torchvision exists the first time it asks: ask now, while
        # the answer is still the true one (open_clip imports transformers under the stand-in).
        from transformers.utils.import_utils import is_torchvision_available

        is_torchvision_available()
    modules = {name: _stand_in(name) for name in _TORCHVISION_MODULES}
    for name, module in modules.items():
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(modules[parent], child, module)
    sys.modules.update(modules)
    try:
        yield
    finally:
        for name in _TORCHVISION_MODULES:
            if sys.modules.get(name) is modules[name]:
                del sys.modules[name]


def import_open_clip() -> Any:
    """``import open_clip``, without torchvision if it is not installed.

    open_clip imports torchvision at package level, and the torchvision wheels that
    install beside a CPU-only torch are often built for CUDA and fail to import; glimpse
    needs only open_clip's models and tokenizers.
    """
    if "open_clip" in sys.modules:
        return sys.modules["open_clip"]
    require("clip", "the open_clip encoder")
    if importlib.util.find_spec("open_clip") is None:
        raise MissingExtraError(missing_extra("the open_clip encoder", "clip")
                                + " && pip install --no-deps open-clip-torch (see the README)", name="open_clip")
    if importlib.util.find_spec("torchvision") is None:
        with _torchvision_stand_in():
            import open_clip
        return open_clip
    try:
        import open_clip
    except Exception as exc:  # a torchvision built for another torch raises RuntimeError
        raise ValueError(f"open_clip cannot be imported ({first_line(exc)}): install the torchvision built for "
                         "this torch, or uninstall torchvision (glimpse does not need it)") from None
    return open_clip


class OpenClipEncoder(TowerEncoder):
    """An open_clip model (see the module docstring for ``model`` and ``pretrained``)."""

    name = "open_clip"

    def __init__(
        self,
        model: str | None = None,
        pretrained: str | None = None,
        *,
        device: str | None = None,
        precision: Precision = "fp32",
        num_threads: int | None = None,
    ) -> None:
        self.model, self.pretrained = _normalise(model, pretrained)
        super().__init__(device, precision, num_threads)
        open_clip = import_open_clip()
        source = self._source()
        try:
            with hub_mode(remote=bool(self._remote(open_clip))):
                net = self._create(open_clip, source)
                tokenizer = open_clip.get_tokenizer(source)
        except ValueError:
            raise
        except Exception as exc:
            raise self._load_error(open_clip, exc) from None
        self._tokenizer = tokenizer
        self._finish(net, _preprocess(open_clip.get_model_preprocess_cfg(net)))

    @property
    def options(self) -> dict[str, str]:
        return {k: v for k, v in (("model", self.model), ("pretrained", self.pretrained)) if v is not None}

    def _source(self) -> str:
        """The model name open_clip takes: an architecture, ``hf-hub:`` or ``local-dir:``."""
        for value in (self.pretrained, self.model):
            if value is not None and value.startswith(HUB):
                return value
        for value in (self.pretrained, self.model):
            if value is not None and os.path.isdir(value):
                return LOCAL_DIR + value
        return self.model  # type: ignore[return-value]  # _normalise ensures one is set

    def _create(self, open_clip: Any, source: str) -> Any:
        weights = self.pretrained
        if source.startswith(LOCAL_DIR):
            folder = source[len(LOCAL_DIR):]
            if not (Path(folder) / "open_clip_config.json").is_file():
                raise ValueError(f"{folder} is not an open_clip model folder: it has no open_clip_config.json")
            if weights is None or weights == folder:
                if not any(p.suffix in _WEIGHT_SUFFIXES for p in Path(folder).iterdir()):
                    raise ValueError(f"no open_clip weights in {folder} (looked for *.safetensors, *.bin, *.pth): "
                                     "copy the checkpoint into it, or pass the checkpoint file with --pretrained")
                return open_clip.create_model(source, require_pretrained=True)
            net = open_clip.create_model(source, load_weights=False)
            open_clip.load_checkpoint(net, self._checkpoint_file(weights))
            return net
        if source.startswith(HUB):
            return open_clip.create_model(source, require_pretrained=True)
        if source not in open_clip.list_models():
            near = difflib.get_close_matches(source, open_clip.list_models(), n=3)
            raise ValueError(f"unknown open_clip architecture {source!r}"
                             + (f" (did you mean {', '.join(near)}?)" if near else "")
                             + ": give a name from open_clip.list_models(), hf-hub:org/name or a model folder")
        if weights is None:
            tags = open_clip.list_pretrained_tags_by_model(source)
            raise ValueError(f"open_clip model {source} needs weights: --pretrained a tag"
                             + (f" ({', '.join(tags[:4])})" if tags else "") + ", a checkpoint file or a folder")
        if is_path(weights):
            weights = self._checkpoint_file(weights)
        elif not open_clip.get_pretrained_cfg(source, weights):
            tags = open_clip.list_pretrained_tags_by_model(source)
            raise ValueError(f"unknown open_clip weights {weights!r} for {source}: use a tag"
                             + (f" ({', '.join(tags)})" if tags else "") + " or a checkpoint file path")
        return open_clip.create_model(source, pretrained=weights, require_pretrained=True)

    @staticmethod
    def _checkpoint_file(path: str) -> str:
        if not os.path.isfile(path):
            raise ValueError(f"no open_clip checkpoint file at {path}: give the path of the weights "
                             "(open_clip_pytorch_model.bin, *.safetensors, *.pt) or of a model folder")
        return path

    def _remote(self, open_clip: Any) -> list[str]:
        """The options naming something to download: tags and hub repositories."""
        return [v for v in (self.model, self.pretrained) if v is not None and not is_path(v)
                and (v.startswith(HUB) or v not in open_clip.list_models())]

    def _load_error(self, open_clip: Any, exc: BaseException) -> ValueError:
        what = f"model {self.model}" + (f" with weights {self.pretrained}" if self.pretrained else "")
        if not self._remote(open_clip):
            return ValueError(f"cannot load open_clip {what}: {first_line(exc)}")
        why = offline_reason() or first_line(exc)
        fetch, pointer = self._fetch(open_clip)
        return ValueError(
            f"open_clip {what} is not on this machine (looked in the Hugging Face cache {hub_cache()}) and could "
            f"not be downloaded ({why}): on a machine with internet run `{fetch}`, copy the result here and "
            f"pass {pointer}")

    def _fetch(self, open_clip: Any) -> tuple[str, str]:
        """A command that downloads the weights, and the options that then point at them."""
        hub = next((v[len(HUB):] for v in (self.pretrained, self.model) if v and v.startswith(HUB)), None)
        if hub is not None:  # a repository with open_clip_config.json: usable as a folder
            folder = hub.rsplit("/", 1)[-1]
            return f"hf download {hub} --local-dir {folder}", f"--pretrained ./{folder} (Python: pretrained='./{folder}')"
        config = open_clip.get_pretrained_cfg(self.model, self.pretrained) or {}
        if config.get("hf_hub"):
            repo, filename = os.path.split(config["hf_hub"])
            filename = filename or "open_clip_pytorch_model.bin"
            folder = repo.rsplit("/", 1)[-1]
            target = f"./{folder}/{filename}"
            fetch = f"hf download {repo} {filename} --local-dir {folder}"
        else:
            target = "./" + os.path.basename(config.get("url", "open_clip_pytorch_model.bin"))
            fetch = f"curl -LO {config.get('url', '')}"
        return fetch, (f"--model {self.model} --pretrained {target} "
                       f"(Python: model='{self.model}', pretrained='{target}')")

    def _image_features(self, pixels: Any) -> Any:
        return self._model.encode_image(pixels)

    def _text_features(self, texts: list[str]) -> Any:
        return self._model.encode_text(self._tokenizer(texts).to(self.device))


def _normalise(model: str | None, pretrained: str | None) -> tuple[str | None, str | None]:
    """Paths made absolute (so later opens find them), ``local-dir:`` folded into plain paths."""
    if not model and not pretrained:
        raise ValueError("the open_clip encoder needs --model (an architecture such as ViT-B-32, hf-hub:org/name "
                         "or a model folder) and --pretrained (a tag, a checkpoint file or a folder)")
    out = []
    for value in (model, pretrained):
        if value:
            value = value[len(LOCAL_DIR):] if value.startswith(LOCAL_DIR) else value
            if not value.startswith(HUB) and is_path(value):
                value = absolute_path(value)
        out.append(value or None)
    if out[0] is None and not (os.path.isdir(out[1]) or out[1].startswith(HUB)):
        raise ValueError("the open_clip encoder needs --model (the architecture) with these weights, "
                         "unless --pretrained is a model folder or hf-hub:org/name")
    return out[0], out[1]


def _preprocess(config: dict) -> Preprocess:
    """open_clip's inference transform (torchvision Resize + CenterCrop, or a squash) as a Preprocess."""
    size = config.get("size", 224)
    height, width = (size, size) if isinstance(size, int) else tuple(size)[-2:]
    mode = config.get("resize_mode", "shortest")
    if mode not in ("shortest", "squash"):
        raise ValueError(f"open_clip resize_mode {mode!r} is not supported by glimpse (shortest and squash are)")
    resample = Image.Resampling.BILINEAR if config.get("interpolation") == "bilinear" else Image.Resampling.BICUBIC
    return Preprocess(int(height), int(width), tuple(config["mean"]), tuple(config["std"]), mode, resample,
                      crop_round=True)
