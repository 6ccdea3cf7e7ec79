"""open_clip and Hugging Face CLIP/SigLIP encoders on tiny random-weight models built here.

Each model is saved to a temporary folder and loaded back by path, as a user's checkpoint
is; glimpse's vectors must equal the library's own encode_image/encode_text
(get_image_features/get_text_features) on the library's own preprocessing.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import glimpse
from glimpse.cli import app
from glimpse.encoders import create_encoder
from glimpse.encoders.open_clip import import_open_clip
from glimpse.encoders.towers import Preprocess
from glimpse.query.filters import Filter

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
# A few million parameters (mostly the 49408-token embedding): milliseconds per image.
OPEN_CLIP_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "head_width": 32, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
TEXTS = ["a red square", "two blue circles on grass", "night"]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def photos(folder: Path, make_image, n: int = 12) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        make_image(folder / f"p{i:02d}.png", seed=i, size=(96 + 8 * (i % 3), 80))
    return folder


def open_clip_folder(folder: Path, seed: int) -> Path:
    open_clip = import_open_clip()
    torch.manual_seed(seed)
    model = open_clip.CLIP(**OPEN_CLIP_CFG)
    folder.mkdir(parents=True)
    config = {"model_cfg": OPEN_CLIP_CFG, "preprocess_cfg": {"mean": OPENAI_MEAN, "std": OPENAI_STD}}
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    torch.save(model.state_dict(), folder / "open_clip_pytorch_model.bin")
    return folder


def tokenizer_folder(folder: Path) -> None:
    """A word-level tokenizer (no hub): <s> words </s>, padded with <pad>."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = sorted({w for t in TEXTS + ["thing", "photo", "of", "a"] for w in t.split()})
    vocab = {"<pad>": 0, "<unk>": 1, "<s>": 2, "</s>": 3, **{w: i + 4 for i, w in enumerate(words)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 2), ("</s>", 3)])
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                            unk_token="<unk>").save_pretrained(folder)


def hf_folder(folder: Path, kind: str, seed: int) -> Path:
    from transformers import CLIPConfig, CLIPModel, SiglipConfig, SiglipModel

    text = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                max_position_embeddings=16, bos_token_id=2, eos_token_id=3, pad_token_id=0)
    vision = dict(image_size=64, patch_size=16, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=2)
    torch.manual_seed(seed)
    if kind == "clip":
        model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=24))
        processor = {"image_processor_type": "CLIPImageProcessor", "do_resize": True, "size": {"shortest_edge": 64},
                     "do_center_crop": True, "crop_size": {"height": 64, "width": 64}, "resample": 3,
                     "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
                     "image_mean": list(OPENAI_MEAN), "image_std": list(OPENAI_STD), "do_convert_rgb": True}
    else:
        model = SiglipModel(SiglipConfig(text_config=text, vision_config=vision))
        processor = {"image_processor_type": "SiglipImageProcessor", "do_resize": True,
                     "size": {"height": 64, "width": 64}, "resample": 3, "do_rescale": True,
                     "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": [0.5] * 3,
                     "image_std": [0.5] * 3, "do_convert_rgb": True}
    model.save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps(processor))
    tokenizer_folder(folder)
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {
        "open_clip": open_clip_folder(root / "oc", seed=0),
        "open_clip_other": open_clip_folder(root / "oc2", seed=1),
        "clip": hf_folder(root / "clip", "clip", seed=0),
        "siglip": hf_folder(root / "siglip", "siglip", seed=0),
    }


def sample_images(make_image, tmp_path: Path) -> list[Image.Image]:
    # Sizes with an even crop margin: the reference transforms below floor it, torchvision rounds it.
    return [Image.open(make_image(tmp_path / f"s{i}.png", seed=50 + i, size=size)).convert("RGB")
            for i, size in enumerate([(96, 80), (80, 120), (64, 64), (300, 200)])]


def reference_pixels(images, mean, std, squash: bool) -> torch.Tensor:
    """The library's preprocessing: transformers' own PIL image processor."""
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    size = {"height": 64, "width": 64} if squash else {"shortest_edge": 64}
    processor = CLIPImageProcessorPil(size=size, crop_size={"height": 64, "width": 64}, do_center_crop=not squash,
                                      image_mean=list(mean), image_std=list(std))
    return processor(images=images, return_tensors="pt")["pixel_values"]


def test_open_clip_vectors_equal_the_library(models, make_image, tmp_path):
    open_clip = import_open_clip()
    encoder = create_encoder("open_clip", pretrained=str(models["open_clip"]), device="cpu")
    reference = open_clip.create_model(f"local-dir:{models['open_clip']}").eval()
    images = sample_images(make_image, tmp_path)
    with torch.no_grad():
        want_images = reference.encode_image(reference_pixels(images, OPENAI_MEAN, OPENAI_STD, squash=False)).numpy()
        want_texts = reference.encode_text(open_clip.get_tokenizer(f"local-dir:{models['open_clip']}")(TEXTS)).numpy()
    assert encoder.dim == 32 and encoder.image_size == 64
    assert cosines(encoder.encode_images(images), want_images).min() >= 0.9999
    assert cosines(encoder.encode_texts(TEXTS), want_texts).min() >= 0.9999
    assert cosines(encoder.encode_texts(TEXTS[:1]), want_texts[:1]).min() >= 0.9999  # the one-thread path
    # The same weights as a checkpoint file next to a model folder: the same encoder.
    by_file = create_encoder("open_clip", model=str(models["open_clip"]),
                             pretrained=str(models["open_clip"] / "open_clip_pytorch_model.bin"))
    assert by_file.version == encoder.version
    assert create_encoder("open_clip", pretrained=str(models["open_clip_other"])).version != encoder.version


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_hf_vectors_equal_the_library(models, make_image, tmp_path, kind):
    from transformers import AutoModel, AutoTokenizer

    folder = models[kind]
    encoder = create_encoder("hf", model=str(folder), device="cpu")
    reference = AutoModel.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    images = sample_images(make_image, tmp_path)
    mean, std = ((0.5,) * 3, (0.5,) * 3) if kind == "siglip" else (OPENAI_MEAN, OPENAI_STD)
    tokens = tokenizer(TEXTS, padding="max_length" if kind == "siglip" else True, max_length=16, truncation=True,
                       return_tensors="pt")

    def features(out):
        return (out if isinstance(out, torch.Tensor) else out.pooler_output).numpy()

    with torch.no_grad():
        want_images = features(reference.get_image_features(
            pixel_values=reference_pixels(images, mean, std, squash=kind == "siglip")))
        want_texts = features(reference.get_text_features(**tokens))
    assert cosines(encoder.encode_images(images), want_images).min() >= 0.9999
    assert cosines(encoder.encode_texts(TEXTS), want_texts).min() >= 0.9999


def test_hf_half_precision_checkpoint_runs_in_fp32(models, tmp_path, make_image):
    from transformers import AutoModel

    half = tmp_path / "half"
    shutil.copytree(models["clip"], half)
    AutoModel.from_pretrained(half).half().save_pretrained(half)
    encoder = create_encoder("hf", model=str(half), device="cpu")
    images = sample_images(make_image, tmp_path)
    assert np.isfinite(encoder.encode_images(images)).all() and np.isfinite(encoder.encode_texts(TEXTS)).all()


def test_crop_offset_rounds_like_each_library():
    image = Image.fromarray(np.arange(64 * 79 * 3, dtype=np.uint8).reshape(64, 79, 3))  # 15 px to crop
    rounded = Preprocess(64, 64, OPENAI_MEAN, OPENAI_STD, crop_round=True)(image)
    floored = Preprocess(64, 64, OPENAI_MEAN, OPENAI_STD, crop_round=False)(image)
    assert np.array_equal(rounded, np.asarray(image)[:, 8:72]) and np.array_equal(floored, np.asarray(image)[:, 7:71])


@pytest.mark.parametrize("kind", ["open_clip", "siglip"])
def test_collection_indexes_searches_and_reopens_with_its_model(models, make_image, tmp_path, kind):
    options = {"pretrained": str(models[kind])} if kind == "open_clip" else {"model": str(models[kind])}
    encoder_name = "open_clip" if kind == "open_clip" else "hf"
    folder = photos(tmp_path / "photos", make_image)
    col = glimpse.open(tmp_path / "col", encoder=encoder_name, **options)
    report = col.add([folder])
    assert report.embedded == 12
    target = folder / "p05.png"
    assert col.search(image=target, k=1)[0].path == str(target)
    assert len(col.search(text="a red square", k=5)) == 5
    composed = col.search(text="night", image=target, k=3)
    assert len(composed) == 3 and str(target) not in [r.path for r in composed]
    wide = col.search(text="a red square", k=12, filters=Filter(min_width=104))
    assert {Image.open(r.path).width for r in wide} == {104, 112} and len(wide) == 8
    col.close()
    # Without options, the collection rebuilds its encoder from what it recorded.
    again = glimpse.open(tmp_path / "col")
    assert again.encoder.options == col.encoder.options and again.encoder.version == col.encoder.version
    again.use_codes("sign", bits=32, oversample=10)
    again.add([folder])
    assert again.stats().codes["fitted_on"] == 12
    assert again.search(image=target, k=1)[0].path == str(target)
    assert [r.id for r in again.search(text="night", k=4)] == [r.id for r in again.search(text="night", k=4, exact=True)]
    again.close()


def test_other_weights_are_refused_and_moved_weights_accepted(models, make_image, tmp_path):
    folder = photos(tmp_path / "photos", make_image, n=3)
    glimpse.open(tmp_path / "col", encoder="open_clip", pretrained=str(models["open_clip"])).add([folder])
    with pytest.raises(glimpse.EncoderMismatchError, match="not comparable") as info:
        glimpse.open(tmp_path / "col", pretrained=str(models["open_clip_other"]))
    assert str(models["open_clip"]) in str(info.value) and str(models["open_clip_other"]) in str(info.value)
    moved = tmp_path / "moved"
    shutil.copytree(models["open_clip"], moved)
    glimpse.open(tmp_path / "col", pretrained=str(moved)).close()
    assert glimpse.open(tmp_path / "col").encoder.options == {"pretrained": str(moved)}
    result = CliRunner().invoke(app, ["index", str(folder), "-c", str(tmp_path / "col"),
                                      "--pretrained", str(models["open_clip_other"])])
    assert result.exit_code == 2 and "not comparable" in result.output


def test_cli_index_search_and_eval_with_a_local_model(models, make_image, tmp_path):
    folder = photos(tmp_path / "photos", make_image, n=6)
    col = str(tmp_path / "col")
    runner = CliRunner()
    done = runner.invoke(app, ["index", str(folder), "-c", col, "--encoder", "hf", "--model", str(models["clip"]),
                               "--device", "cpu"])
    assert done.exit_code == 0, done.output
    found = runner.invoke(app, ["search", "a red square", "-c", col, "--json", "-k", "3"])
    assert found.exit_code == 0 and len(json.loads(found.output)) == 3
    (folder / "captions.tsv").write_text("image\tcaption\n" + "".join(f"p{i:02d}.png\ta photo of thing {i}\n"
                                                                     for i in range(6)))
    scored = runner.invoke(app, ["eval", "captioned", str(folder), "--encoder", "open_clip", "--pretrained",
                                 str(models["open_clip"]), "--codes", "sign:32", "--out", str(tmp_path / "o"),
                                 "--cache", str(tmp_path / "c")])
    assert scored.exit_code == 0, scored.output
    rows = json.loads((tmp_path / "o" / "report.json").read_text())["results"]
    assert {r["encoder"] for r in rows} == {"open_clip"} and len(rows) == 4
    bad = runner.invoke(app, ["eval", "captioned", str(folder), "--encoder", "hash", "--model", "x"])
    assert bad.exit_code == 2 and "--model" in bad.output


@pytest.mark.parametrize("argv", [
    ["--encoder", "open_clip", "--model", "ViT-B-32", "--pretrained", "laion2b_s34b_b79k"],
    ["--encoder", "open_clip", "--pretrained", "hf-hub:nobody/no-such-clip"],
    ["--encoder", "hf", "--model", "openai/clip-vit-base-patch32"],
])
def test_missing_weights_offline_is_one_clear_sentence(argv, tmp_path, monkeypatch, make_image):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    folder = photos(tmp_path / "photos", make_image, n=1)
    result = CliRunner().invoke(app, ["index", str(folder), "-c", str(tmp_path / "col"), *argv])
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert "Traceback" not in message and message.count(". ") == 0
    assert "is not on this machine" in message and "offline mode (HF_HUB_OFFLINE=1)" in message
    assert "hf download" in message and ("--pretrained ./" in message or "--model ./" in message)
    assert not (tmp_path / "col").exists()


def test_no_network_is_found_at_once_and_said(tmp_path, monkeypatch):
    import huggingface_hub.constants

    from glimpse.encoders import towers

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # read once, at import
    monkeypatch.setattr(towers, "hub_unreachable", lambda: "no network: cannot reach huggingface.co (test)")
    with pytest.raises(ValueError, match=r"could not be downloaded \(no network: cannot reach huggingface.co"):
        create_encoder("hf", model="openai/clip-vit-base-patch32")


@pytest.mark.parametrize("options, message", [
    ({}, "needs --model"),
    ({"model": "ViT-B-32"}, "needs weights"),
    ({"model": "ViT-B-3"}, "did you mean"),
    ({"model": "ViT-B-32", "pretrained": "no_such_tag"}, "unknown open_clip weights"),
    ({"model": "ViT-B-32", "pretrained": "/nowhere/model.bin"}, "no open_clip checkpoint file"),
    ({"pretrained": "/tmp", "model": None}, "no open_clip_config.json"),
    ({"model": "ViT-B-32", "pretrained": "x", "device": "tpu"}, "device"),
])
def test_open_clip_bad_options_are_clear_errors(options, message):
    with pytest.raises(ValueError, match=message):
        create_encoder("open_clip", **options)


def test_model_options_are_refused_by_encoders_without_them(tmp_path):
    with pytest.raises(ValueError, match="does not take the option 'model'"):
        create_encoder("hash", model="x")
    with pytest.raises(ValueError, match="no model folder"):
        create_encoder("hf", model=str(tmp_path / "missing"))
