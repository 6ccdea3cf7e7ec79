"""Golden search results on real photos: the same queries must give the same ids and scores.

``python tests/golden/make_golden.py`` indexes the first ``PHOTOS`` photos of
``../shared/data/captioned-dev`` (sorted by number) with the default encoder, runs ``QUERIES``
with and without binary codes, and writes ``captioned_dev.json`` next to this file.
tests/test_golden.py runs the same queries on the code under test and compares. Regenerate
only for a change meant to alter results, and say which in the commit.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "captioned-dev"
FIXTURE = Path(__file__).with_name("captioned_dev.json")
#: The first photo's image vector as the recording machine computed it: numerics can differ between CPUs
#: (bf16's by up to 1e-3 between an AVX-512 machine and an AVX2 one), so the fixture is compared only
#: where the encoder reproduces this.
PROBE = Path(__file__).with_name("probe.json")
PHOTOS = 120
K = 10
#: The image precision the fixture was recorded with: ONNX Runtime's fp32 graph, pinned (the default is
#: int8 on CPUs with VNNI). Until 2026-12-03 it was bf16 (torch), which took 53 s of CI on an AVX2 CPU
#: for 120 photos and was skipped on AVX-512 ones, whose bf16 numerics differ.
PRECISION = "fp32"
#: The default encoder's version the fixture was recorded with (version 2 renamed classes in the prompts, so
#: its image vectors differ): pinned for the same reason.
ENCODER_VERSION = "1"

#: name -> keyword arguments of ``Collection.search``; ``@N`` in a value is the N-th photo's path.
QUERIES: dict[str, dict] = {
    "text": {"text": "a dog running on the grass"},
    "text_k3": {"text": "a plate of food on a table", "k": 3},
    "image": {"image": "@7"},
    "composed": {"image": "@7", "text": "at night", "alpha": 0.5},
    "filtered_glob": {"text": "people standing in a street", "filters": {"path_glob": "*/1*.jpg"}},
    "filtered_size": {"image": "@20", "filters": {"min_bytes": 15000, "orientation": "square"}},
    "terms": {"terms": '2:"a red car" - "a tree" + #5'},
    "like": {"like": 3},
    "min_score": {"text": "a bird", "min_score": 0.1},
    "refine_aqe": {"text": "a building with windows", "refine": "aqe"},
}

#: Extra per-query settings run with binary codes on (the collection's defaults otherwise).
CODE_VARIANTS: dict[str, dict] = {
    "": {},
    "exact": {"exact": True},
    "hamming": {"scoring": "hamming"},
    "asymmetric": {"scoring": "asymmetric"},
    "cascade": {"scoring": "cascade"},
    "oversample1": {"oversample": 1},
    "no_rerank": {"rerank": False},
}


def photos() -> list[Path]:
    return sorted((SHARED / "images").glob("*.jpg"), key=lambda p: int(p.stem))[:PHOTOS]


def _arguments(spec: dict, folder: Path) -> dict:
    from glimpse.query.filters import Filter

    args = {"k": K, **spec}
    for key, value in spec.items():
        if isinstance(value, str) and value.startswith("@"):
            args[key] = folder / photos()[int(value[1:])].name
    if "filters" in args:
        args["filters"] = Filter(**args["filters"])
    return args


def probe() -> list[float]:
    """The first photo's image vector at ``PRECISION``, rounded to 6 decimals."""
    from PIL import Image

    from glimpse.encoders import create_encoder

    with Image.open(photos()[0]) as image:
        vector = create_encoder("lite0-minilm", precision=PRECISION, version=ENCODER_VERSION).encode_images([image.convert("RGB")])[0]
    return [round(float(v), 6) for v in vector]


def run(workdir: Path) -> dict[str, list[list]]:
    """Every query's [id, score] pairs, codes off then on, on a fresh collection in ``workdir``."""
    import glimpse

    folder = workdir / "photos"
    folder.mkdir(parents=True)
    for photo in photos():  # links, not copies: the photos stay where they are
        (folder / photo.name).symlink_to(photo)
    col = glimpse.open(workdir / "col", precision=PRECISION, version=ENCODER_VERSION)
    col.index([folder])
    out: dict[str, list[list]] = {}

    def record(prefix: str, extra: dict) -> None:
        for name, spec in QUERIES.items():
            hits = col.search(**{**_arguments(spec, folder), **extra})
            out[f"{prefix}{name}"] = [[hit.id, round(hit.score, 5)] for hit in hits]

    record("flat/", {})
    # A shortlist of k x 2 of 120 photos, so the code scan decides what the re-rank sees. `sign` codes: their fit
    # is the mean and a seeded rotation, the same on every CPU; the `learned` fit (torch training) is not (recorded
    # on an AMD EPYC, 36 of its code queries gave other results on an Intel Xeon whose image vectors matched).
    col.use_codes("sign", bits=64, oversample=2)
    for variant, extra in CODE_VARIANTS.items():
        record(f"codes{'-' + variant if variant else ''}/", extra)
    col.close()
    return out


def main() -> None:
    import tempfile

    if not (SHARED / "images").is_dir():
        sys.exit(f"needs the shared development photos at {SHARED}")
    with tempfile.TemporaryDirectory() as tmp:
        results = run(Path(tmp))
    lines = [f"  {json.dumps(name)}: {json.dumps(hits)}" for name, hits in results.items()]
    FIXTURE.write_text("{\n" + ",\n".join(lines) + "\n}\n")
    PROBE.write_text(json.dumps(probe()) + "\n")
    print(f"{len(results)} queries written to {FIXTURE}")


if __name__ == "__main__":
    main()
