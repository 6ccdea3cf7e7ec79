"""Words in images: OCR word recall, ingest speed with OCR on and off, and text search with fusion.

    nice -n 10 python benchmarks/ocr.py [--data ../shared/data/captioned-dev] [--images 400] [--signed 120]

Builds a test set from captioned photos: the first ``--signed`` get two known words rendered
on them (cycling through text sizes, angles and contrasts), the rest stay as they are. Then:

1. ingest: ``add`` without OCR, then the OCR pass (``enrich``), each in img/s (load average shown);
2. OCR word recall on the rendered words (a word counts when the image's OCR text holds it,
   spaces ignored), overall and by size, angle and contrast;
3. text->image R@1, R@10 and median rank with fusion none / calibrated / rrf for three query
   sets: the captions (the photos' own long descriptions), the rendered words alone
   ("get scientific right"), and the caption's first sentence plus the words in quotes.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

import glimpse
from glimpse.storage.words import squashed

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "captioned-dev"
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")
SIZES = (10, 14, 20, 26)  # text height in pixels on the 224-pixel photos
ANGLES = (0, 15, 30)
CONTRASTS = ("high", "outline", "low")  # black on a white plate; white with a dark outline on the photo; grey on grey
WORDS = """
exit only stop open closed sale free parking police taxi hotel coffee bakery pharmacy school
danger keep out welcome entrance bank market garden station museum library theatre cinema
pizza burger bar pub cafe books music dance peace love hope vote freedom justice science
right truth climate future planet water power river north south east west city park beach
bridge tower street avenue road motel diner grill kitchen shop store fresh fruit bread cake
""".split()


def render(photo: Image.Image, words: list[str], size: int, angle: int, contrast: str, rng) -> Image.Image:
    """Two words on two lines, as a sign would show them, rotated and placed at random."""
    font = ImageFont.truetype(str(FONT), size) if FONT.exists() else ImageFont.load_default(size=size)
    text = "\n".join(w.upper() for w in words)
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    left, top, right, bottom = probe.multiline_textbbox((0, 0), text, font=font)
    pad = max(2, size // 4)
    layer = Image.new("RGBA", (right - left + 2 * pad, bottom - top + 2 * pad), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    at = (pad - left, pad - top)
    if contrast == "high":
        draw.rectangle((0, 0, *layer.size), fill=(255, 255, 255, 255))
        draw.multiline_text(at, text, font=font, fill=(0, 0, 0, 255))
    elif contrast == "outline":
        draw.multiline_text(at, text, font=font, fill=(255, 255, 255, 255), stroke_width=max(1, size // 10),
                            stroke_fill=(0, 0, 0, 255))
    else:
        draw.rectangle((0, 0, *layer.size), fill=(150, 150, 150, 255))
        draw.multiline_text(at, text, font=font, fill=(105, 105, 105, 255))
    layer = layer.rotate(angle, expand=True, resample=Image.Resampling.BICUBIC)
    out = photo.convert("RGB").copy()
    x = int(rng.integers(0, max(1, out.width - layer.width)))
    y = int(rng.integers(0, max(1, out.height - layer.height)))
    out.paste(layer, (x, y), layer)
    return out


def build(data: Path, folder: Path, images: int, signed: int, seed: int) -> list[dict]:
    rows = list(csv.DictReader(open(data / "captions.tsv", encoding="utf-8"), delimiter="\t"))[:images]
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    cases = []
    for n, row in enumerate(rows):
        photo = Image.open(data / row["image"])
        case = {"file": str(folder / f"{n:04d}.jpg"), "caption": row["caption"], "words": []}
        if n < signed:
            words = [str(w) for w in rng.choice(WORDS, size=2, replace=False)]
            size, angle, contrast = SIZES[n % 4], ANGLES[(n // 4) % 3], CONTRASTS[(n // 12) % 3]
            photo = render(photo, words, size, angle, contrast, rng)
            case.update(words=words, size=size, angle=angle, contrast=contrast)
        photo.convert("RGB").save(case["file"], quality=92)
        cases.append(case)
    return cases


def ranks(col, queries: list[tuple[str, int]], fusion: str) -> np.ndarray:
    out = []
    for text, target in queries:
        ids = [r.id for r in col.search(text, k=len(col), fusion=fusion)]
        out.append(ids.index(target) + 1 if target in ids else len(col) + 1)
    return np.array(out)


def summary(r: np.ndarray) -> dict:
    return {"R@1": float(np.mean(r <= 1)), "R@10": float(np.mean(r <= 10)), "median rank": float(np.median(r)),
            "queries": int(len(r))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--images", type=int, default=400, help="photos in the gallery (the first N)")
    parser.add_argument("--signed", type=int, default=120, help="of those, photos that get rendered words")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="glimpse-ocr-"))
    cases = build(args.data, work / "images", args.images, args.signed, args.seed)
    result: dict = {"images": len(cases), "signed": args.signed, "cpus": os.cpu_count(),
                    "load before": os.getloadavg()[0]}

    with glimpse.open(work / "col") as col:
        col.encoder.encode_images([Image.new("RGB", (224, 224))])  # load the model before the clock starts
        start = time.perf_counter()
        col.add([work / "images"])
        embed_s = time.perf_counter() - start
        start = time.perf_counter()
        col.enrich(ocr=True)
        ocr_s = time.perf_counter() - start
        result["load after"] = os.getloadavg()[0]
        result["ingest img/s"] = {"ocr off": len(cases) / embed_s, "ocr pass alone": len(cases) / ocr_s,
                                  "ocr on (both)": len(cases) / (embed_s + ocr_s)}
        print(json.dumps(result, indent=1), flush=True)

        item = {c["file"]: col._meta.item_for_path(c["file"]) for c in cases}
        found, by = [], {"size": {}, "angle": {}, "contrast": {}}
        for c in cases[: args.signed]:
            text = squashed(" ".join(w.text for w in col.item(item[c["file"]]).words or []))
            hits = [w in text for w in c["words"]]
            found += hits
            for key in by:
                by[key].setdefault(str(c[key]), []).extend(hits)
        result["word recall"] = {"all": float(np.mean(found)), "words": len(found),
                                 **{key: {k: float(np.mean(v)) for k, v in groups.items()} for key, groups in by.items()}}
        print(json.dumps(result["word recall"], indent=1), flush=True)

        query_sets = {
            "captions": [(c["caption"], item[c["file"]]) for c in cases],
            "rendered words": [(" ".join(c["words"]), item[c["file"]]) for c in cases[: args.signed]],
            "first sentence + quoted words": [
                (c["caption"].split(".")[0] + f' with a sign that says "{" ".join(c["words"])}"', item[c["file"]])
                for c in cases[: args.signed]],
        }
        result["search"] = {}
        for name, queries in query_sets.items():
            result["search"][name] = {f: summary(ranks(col, queries, f)) for f in ("none", "calibrated", "rrf")}
            print(name, json.dumps(result["search"][name]), flush=True)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
