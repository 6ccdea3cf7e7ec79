"""How lite0-minilm turns a text into its vector: sentences of a long text mixed in (no model loaded)."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from glimpse.encoders import bridge, create_encoder, l2_normalize
from glimpse.eval.embed import EmbeddingCache


def _fake_minilm(texts):
    """A deterministic stand-in for MiniLM: a seeded random unit vector per text."""
    rows = [np.random.default_rng(zlib.crc32(t.encode())).standard_normal(bridge.TEXT_DIM) for t in texts]
    return l2_normalize(np.array(rows, np.float32).reshape(len(texts), bridge.TEXT_DIM))


@pytest.fixture
def encoder(monkeypatch, tmp_path):
    enc = bridge.BridgeEncoder(cache_dir=tmp_path)
    monkeypatch.setattr(enc, "_encode_minilm", _fake_minilm)
    return enc


@pytest.mark.parametrize("text, sentences", [
    ("A dog on a beach.", ["A dog on a beach."]),
    ("A dog. It runs!  Is it wet? yes", ["A dog.", "It runs!", "Is it wet?", "yes"]),
    ("3.5 metres tall", ["3.5 metres tall"]),
    ("", [""]),
    ("   ", ["   "]),
])
def test_split_sentences(text, sentences):
    assert bridge.split_sentences(text) == sentences


def test_one_sentence_is_its_minilm_vector(encoder):
    texts = ["a dog running on the grass", "A red car."]
    assert np.array_equal(encoder.text_semantic(texts), _fake_minilm(texts))
    full = encoder.encode_texts(texts)
    assert not full[:, : bridge.VISUAL_DIM].any()
    np.testing.assert_allclose(full[:, bridge.VISUAL_DIM :], _fake_minilm(texts), atol=1e-7)


def test_sentences_of_a_long_text_are_mixed_in_first_ones_weighing_most(encoder):
    caption = "A dog on a beach. The sky is grey. Waves in the distance."
    s1, s2, s3 = _fake_minilm(bridge.split_sentences(caption))
    whole = _fake_minilm([caption])[0]
    sentences = l2_normalize(s1 + 0.5 * s2 + 0.25 * s3)
    want = l2_normalize(bridge.WHOLE_TEXT_WEIGHT * whole + (1 - bridge.WHOLE_TEXT_WEIGHT) * sentences)
    got = encoder.text_semantic(["a cat", caption])
    np.testing.assert_allclose(got[1], want, atol=1e-6)
    assert np.array_equal(got[0], _fake_minilm(["a cat"])[0])  # its neighbour in the batch is untouched
    assert got[1] @ s1 > got[1] @ s2 > got[1] @ s3
    assert np.linalg.norm(got[1]) == pytest.approx(1.0, abs=1e-6)


def test_evaluation_text_cache_is_keyed_by_the_text_version(tmp_path, monkeypatch):
    enc = create_encoder("hash", dim=16)
    calls = []
    real = enc.encode_texts
    monkeypatch.setattr(enc, "encode_texts", lambda texts: calls.append(list(texts)) or real(texts))
    monkeypatch.setattr(enc, "text_version", "1", raising=False)
    EmbeddingCache(enc, tmp_path).texts(["a dog"])
    EmbeddingCache(enc, tmp_path).texts(["a dog"])
    assert calls == [["a dog"]]  # the second run read the cache
    monkeypatch.setattr(enc, "text_version", "2")
    EmbeddingCache(enc, tmp_path).texts(["a dog"])
    assert calls == [["a dog"], ["a dog"]]  # a new text version embeds again


def test_evaluation_cache_is_keyed_by_the_encoders_variant(tmp_path, monkeypatch):
    """int8 and fp32 image vectors differ (and int8's with its quantisation): an evaluation must
    not score the vectors another precision left in the cache."""
    from glimpse.encoders.bridge import BridgeEncoder

    enc = create_encoder("hash", dim=16)
    plain = EmbeddingCache(enc, tmp_path).root
    monkeypatch.setattr(enc, "variant", "fp32", raising=False)
    assert EmbeddingCache(enc, tmp_path).root != plain
    variants = {BridgeEncoder(precision=p).variant for p in ("int8", "fp32", "bf16")}  # nothing loads
    assert len(variants) == 3 and all(variants)


def test_prompts_use_the_plain_english_names_of_ambiguous_classes(encoder):
    labels, names = bridge.load_class_names(), bridge.load_prompt_names()
    assert len(names) == 1000 and all(names)
    assert (labels[673], names[673]) == ("mouse", "computer mouse")  # not the rodent
    assert (labels[383], names[383]) == ("Madagascar cat", "lemur")
    assert names[162] == labels[162] == "beagle"  # clear labels stay
    prompted = []

    def record(texts):
        prompted.extend(texts)
        return _fake_minilm(texts)

    encoder._encode_minilm = record
    encoder.class_vectors()
    assert "a photo of a computer mouse." in prompted and "a photo of a mouse." not in prompted


@pytest.mark.parametrize("text", [
    "1\tgoldfish\tgold fish\n1\tgoldfish\tfish",  # renamed twice
    "2\tgoldfish\tgold fish",  # class 2 is not goldfish: the file drifted from the class list
    "1\tgoldfish",  # no name
    "9\tx\ty",  # no such class
])
def test_class_renames_are_checked_against_the_labels(text):
    with pytest.raises(RuntimeError, match="line"):
        bridge.renamed_classes(["tench", "goldfish", "shark"], text)
    assert bridge.renamed_classes(["tench", "goldfish"], "# a comment\n\n1\tgoldfish\tgold fish\n") == ["tench", "gold fish"]


def test_a_collection_filled_by_version_1_keeps_its_prompts(tmp_path):
    """Version 2 renamed classes in the prompts: a collection whose vectors version 1 computed opens
    with version 1 (its labels as prompts), a new one gets version 2, and no other version is built."""
    import glimpse

    with glimpse.open(tmp_path / "old") as col:  # nothing loads until something is encoded
        assert col.encoder.version == bridge.VERSION == "2"
        col._meta.set_meta(encoder_version="1")
    with glimpse.open(tmp_path / "old") as col:
        assert col.encoder.version == "1" and col.encoder.info.version == "1"
        assert bridge.BridgeEncoder(cache_dir=tmp_path).at_version("1").version == "1"
    prompted = []

    def record(texts):
        prompted.extend(texts)
        return _fake_minilm(texts)

    old = bridge.BridgeEncoder(cache_dir=tmp_path, version="1")
    old._encode_minilm = record
    old.class_vectors()
    assert "a photo of a mouse." in prompted and "a photo of a computer mouse." not in prompted
    assert bridge.BridgeEncoder().at_version("0") is None
    with pytest.raises(ValueError, match="version must be one of 1, 2"):
        bridge.BridgeEncoder(version="3")
    with glimpse.open(tmp_path / "other") as col:
        col._meta.set_meta(encoder_version="0")
    with pytest.raises(glimpse.EncoderMismatchError, match="v0"):
        glimpse.open(tmp_path / "other")
