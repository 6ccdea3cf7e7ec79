"""Ingest throughput: decode alone, encoder alone, end to end, and their ratio.

    python benchmarks/ingest.py [--data ../shared/data/captioned-dev] [--encoder lite0-minilm]

Goals (issue #2, default encoder, 2-core machine): end-to-end >= 300 img/s and
end-to-end / encoder-alone >= 0.9, i.e. the model never waits on I/O.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

import glimpse
from glimpse.encoders import create_encoder
from glimpse.ingest import prepare_files, scan

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "captioned-dev"


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def median_seconds(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="a folder of images")
    parser.add_argument("--encoder", default="lite0-minilm")
    parser.add_argument("--precision", default=None, help="bf16 or fp32 (default: the encoder's)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3, help="passes per stage; the median is reported")
    args = parser.parse_args()
    if not args.data.exists():
        raise SystemExit(f"no data at {args.data}: pass --data FOLDER")

    options = {"precision": args.precision} if args.precision else {}
    encoder = create_encoder(args.encoder, **options)
    entries = list(scan([args.data]))
    n = len(entries)
    print(f"{n} images under {args.data}; encoder {encoder.name} v{encoder.version}, "
          f"batch {args.batch_size}, {args.workers} decode workers")

    # Warm up: load the model(s) and run one batch so lazy start-up is not timed.
    warm = [p.array for p in prepare_files(entries[: args.batch_size], encoder.prepare, target=encoder.image_size)]
    encoder.encode_prepared(np.stack(warm))

    def decode_pass() -> list[np.ndarray]:
        prepared = prepare_files(entries, encoder.prepare, target=encoder.image_size, workers=args.workers)
        return [p.array for p in prepared if p.array is not None]

    def encode_pass(batch: np.ndarray) -> None:
        for i in range(0, len(batch), args.batch_size):
            encoder.encode_prepared(batch[i : i + args.batch_size])

    def e2e_pass() -> int:
        with tempfile.TemporaryDirectory() as tmp:
            col = glimpse.open(Path(tmp) / "bench", encoder=encoder)
            report = col.add([args.data], batch_size=args.batch_size, workers=args.workers)
            col.close()
        return report.embedded

    arrays = decode_pass()
    batch = np.stack(arrays)
    decode_s = median_seconds(decode_pass, args.repeat)
    encode_s = median_seconds(lambda: encode_pass(batch), args.repeat)
    embedded = e2e_pass()
    e2e_s = median_seconds(e2e_pass, args.repeat)

    decode, encode, e2e = rate(len(arrays), decode_s), rate(len(batch), encode_s), rate(embedded, e2e_s)
    print(f"{'stage':<34}{'img/s':>10}")
    print(f"{'decode alone (read+hash+decode)':<34}{decode:>10.0f}")
    print(f"{'encoder alone':<34}{encode:>10.0f}")
    print(f"{'end to end (Collection.add)':<34}{e2e:>10.0f}")
    print(f"ratio end-to-end / encoder: {e2e / encode:.2f}   (goal >= 0.90)")
    print(f"end-to-end goal >= 300 img/s: {'met' if e2e >= 300 else 'NOT met'} ({e2e:.0f})")


if __name__ == "__main__":
    main()
