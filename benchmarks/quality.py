"""Retrieval quality of the default encoder on captioned-dev, with the ablations behind its choices.

    python benchmarks/quality.py [--data ../shared/data/captioned-dev] [--precision bf16|fp32]
                                 [--no-copies] [--speed]

Text->image: each caption's one relevant image is the image on its row. Two query sets:
the full (long, ~70-word) captions and their first sentence (a fair short-query test).
Image->image: augmented copies (crop, 112-px JPEG q25, rotate+colour+text) must find
their original among the 857 originals (R@1). Nothing here is trained: the data is only
measured on.
"""

from __future__ import annotations

import argparse
import csv
import io
import re
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from glimpse.encoders import bridge, create_encoder, l2_normalize  # noqa: E402
from glimpse.metrics import median_rank, recall_at_k  # noqa: E402

ALT_TEMPLATES = {
    "a photo of a {}.": "photo",
    "a {}.": "a",
    "{}": "bare",
    "The image shows a {}.": "shows",
    "a close-up photo of a {}.": "close-up",
}


def load(data: Path) -> tuple[list[Path], list[str]]:
    with open(data / "captions.tsv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [data / r["image"] for r in rows], [r["caption"] for r in rows]


def sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s] or [text]


def semantic(logits: np.ndarray, classes: np.ndarray, k: int | None, t: float, centre: bool):
    z = logits / t
    p = np.exp(z - z.max(axis=1, keepdims=True))
    if k is not None and k < p.shape[1]:
        kth = -np.partition(-p, k - 1, axis=1)[:, k - 1 : k]
        p = np.where(p >= kth, p, 0.0)
    p /= p.sum(axis=1, keepdims=True)
    c = classes - classes.mean(axis=0, keepdims=True) if centre else classes
    return l2_normalize(p @ c)


def t2i(texts: np.ndarray, images: np.ndarray) -> str:
    scores = texts @ images.T
    gt = np.arange(len(images))
    r = recall_at_k(scores, gt, [1, 5, 10])
    return f"{r[1]:.3f}  {r[5]:.3f}  {r[10]:.3f}  {median_rank(scores, gt):5.0f}"


def augmentations(seed: int = 0):
    rng = np.random.default_rng(seed)

    def jpeg(im: Image.Image, q: int) -> Image.Image:
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=q)
        return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")

    def crop(im: Image.Image) -> Image.Image:  # 60-80% random crop, upscaled, JPEG q80
        w, h = im.size
        f = rng.uniform(0.6, 0.8)
        cw, ch = int(w * f), int(h * f)
        left, top = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
        return jpeg(im.crop((left, top, left + cw, top + ch)).resize((320, 320)), 80)

    def small_jpeg(im: Image.Image) -> Image.Image:  # half size, JPEG q25
        return jpeg(im.resize((im.width // 2, im.height // 2)), 25)

    def mix(im: Image.Image) -> Image.Image:  # rotate, colour/brightness, overlaid text, q60
        im = im.rotate(rng.uniform(-12, 12), resample=Image.Resampling.BILINEAR)
        im = ImageEnhance.Color(im).enhance(rng.uniform(0.5, 1.5))
        im = ImageEnhance.Brightness(im).enhance(rng.uniform(0.7, 1.3))
        ImageDraw.Draw(im).text(
            (10, int(rng.integers(10, 180))), f"copy #{rng.integers(1000)}", fill=(255, 255, 0),
            font_size=28,
        )
        return jpeg(im, 60)

    return {"crop": crop, "jpeg": small_jpeg, "mix": mix}


def features(enc, images: list[Image.Image], bs: int = 32):
    vis, logits = [], []
    for i in range(0, len(images), bs):
        v, lg = enc.image_features(np.stack([enc.prepare(im) for im in images[i : i + bs]]))
        vis.append(v)
        logits.append(lg)
    return np.concatenate(vis), np.concatenate(logits)


def speed(enc, batches: int = 20) -> float:
    """img/s of encode_prepared at batch 32, from the median batch time (robust to noisy neighbours)."""
    batch = np.random.default_rng(0).integers(0, 256, (32, 224, 224, 3), dtype=np.uint8)
    for _ in range(3):
        enc.encode_prepared(batch)
    times = []
    for _ in range(batches):
        t0 = time.perf_counter()
        enc.encode_prepared(batch)
        times.append(time.perf_counter() - t0)
    return len(batch) / float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "captioned-dev")
    ap.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    ap.add_argument("--no-copies", action="store_true", help="skip the image->image copy test")
    ap.add_argument("--speed", action="store_true", help="also time encode_prepared, bf16 and fp32")
    args = ap.parse_args()

    paths, captions = load(args.data)
    print(f"captioned-dev: {len(paths)} images, {len(captions)} captions ({args.data})")
    enc = create_encoder("lite0-minilm", precision=args.precision)
    originals = [Image.open(p).convert("RGB") for p in paths]

    t0 = time.perf_counter()
    img = np.concatenate(
        [enc.encode_prepared(np.stack([enc.prepare(im) for im in originals[i : i + 32]]))
         for i in range(0, len(originals), 32)]
    )
    vis, logits = features(enc, originals)
    print(f"encoded images twice in {time.perf_counter() - t0:.1f}s ({args.precision})")

    first = [sentences(c)[0] for c in captions]
    q_full, q_first = enc.encode_texts(captions), enc.encode_texts(first)
    m_full, m_first = q_full[:, bridge.VISUAL_DIM :], q_first[:, bridge.VISUAL_DIM :]
    split = [sentences(c) for c in captions]
    flat = enc._encode_minilm([s for ss in split for s in ss])
    bounds = np.cumsum([0] + [len(ss) for ss in split])
    m_sentavg = l2_normalize(np.stack([flat[a:b].mean(0) for a, b in zip(bounds, bounds[1:])]))

    ens = enc.class_vectors() + 0.0  # centred ensemble (the default)
    names = bridge.load_class_names()
    per_template = {
        label: enc._encode_minilm([t.format(c) for c in names]) for t, label in ALT_TEMPLATES.items()
    }
    ens_raw = l2_normalize(
        sum(enc._encode_minilm([t.format(c) for c in names]) for t in bridge.PROMPT_TEMPLATES)
    )

    header = f"{'text->image':58s} {'full captions: R@1   R@5   R@10  medR':>40s}   first sentence: R@1   R@5   R@10  medR"
    print("\n" + header)

    def line(label: str, sem: np.ndarray, full: np.ndarray = m_full, short: np.ndarray = m_first):
        print(f"{label:58s} {'':17s}{t2i(full, sem)}   {'':16s}{t2i(short, sem)}")

    T, k = bridge.TEMPERATURE, bridge.TOP_K
    print(f"{'DEFAULT encoder (encode_texts / encode_prepared)':58s} {'':17s}{t2i(q_full, img)}   {'':16s}{t2i(q_first, img)}")
    line("ConSE baseline: 'a photo of a {}.', k=10, T=1, uncentred", semantic(logits, per_template["photo"], 10, 1.0, False))
    for kk in (1, 5, 10, 50, None):
        line(f"  ConSE 'photo' k={kk or 'all'}, T=1, uncentred", semantic(logits, per_template["photo"], kk, 1.0, False))
    for kk in (5, 20, 50):
        line(f"  ConSE 'photo' k={kk}, T=2.5, uncentred", semantic(logits, per_template["photo"], kk, 2.5, False))
    line("  prompt ensemble, k=10, T=1, uncentred", semantic(logits, ens_raw, 10, 1.0, False))
    line(f"  prompt ensemble, all classes, T={T}, uncentred", semantic(logits, ens_raw, k, T, False))
    for tt in (1.0, 2.0, 2.5, 3.0, 4.0):
        line(f"  prompt ensemble, centred, all classes, T={tt}", semantic(logits, ens, k, tt, False))
    for kk in (10, 50):
        line(f"  prompt ensemble, centred, k={kk}, T={T}", semantic(logits, ens, kk, T, False))
    for label, cv in per_template.items():
        line(f"  single template '{label}', centred, all classes, T={T}", semantic(logits, cv, k, T, True))
    line("  default image side, text = mean of sentence vectors", semantic(logits, ens, k, T, False), m_sentavg, m_first)

    if not args.no_copies:
        print(f"\n{'image->image: augmented copy finds its original (R@1 of 857)':62s} crop   jpeg   mix")
        augs = augmentations()
        sem_o = enc.semantic_from_logits(logits)
        copies = {}
        for name, fn in augs.items():
            v, lg = features(enc, [fn(im) for im in originals])
            copies[name] = (v, enc.semantic_from_logits(lg))
        gt = np.arange(len(originals))

        def copy_row(label: str, wv: float) -> None:
            ws = np.sqrt(1 - wv**2)
            db = np.hstack([wv * l2_normalize(vis), ws * sem_o])
            out = []
            for name in augs:
                v, s = copies[name]
                q = np.hstack([wv * l2_normalize(v), ws * s])
                out.append(f"{recall_at_k(q @ db.T, gt, 1):.3f}")
            print(f"{label:62s} " + "  ".join(out))

        for wv in (1.0, 0.95, bridge.VISUAL_WEIGHT, 0.8, 1 / np.sqrt(2), 0.0):
            tag = " (default)" if wv == bridge.VISUAL_WEIGHT else ""
            copy_row(f"  w_v={wv:.2f}{tag}", wv)

    if args.speed:
        print("\nencode_prepared, batch 32, 224 px (img/s):")
        for prec in ("bf16", "fp32"):
            e = create_encoder("lite0-minilm", precision=prec)
            print(f"  {prec}: {speed(e):.0f}")


if __name__ == "__main__":
    main()
