"""Ingest throughput: decode alone, encoder alone, end to end, and their ratio.

    python benchmarks/ingest.py [--data ../shared/data/captioned-dev] [--encoder lite0-minilm[,lite1-minilm,...]]
    python benchmarks/ingest.py --encoder lite0-minilm@fp32,lite0-minilm@int8   # one encoder at two precisions

Goals (issue #2, default encoder, 2-core machine): end-to-end >= 300 img/s and
end-to-end / encoder-alone >= 0.9, i.e. the model never waits on I/O. Several encoders run
interleaved in one process and are compared with the first; each also gets its model's CPU
time per image on one thread, a cost ratio that depends far less on other jobs' load on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

import glimpse
from glimpse.encoders import create_encoder
from glimpse.encoders.runtime import torch_threads
from glimpse.ingest import prepare_files, scan

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "captioned-dev"


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


class Stages:
    """One encoder's three ingest stages over the same files."""

    def __init__(self, encoder, entries: list, data: Path, batch_size: int, workers: int) -> None:
        self.encoder, self.entries, self.data = encoder, entries, data
        self.batch_size, self.workers = batch_size, workers
        # Warm up: load the model(s) and run one batch so lazy start-up is not timed.
        warm = [p.array for p in prepare_files(entries[:batch_size], encoder.prepare, target=encoder.image_size)]
        encoder.encode_prepared(np.stack(warm))
        self.batch = np.stack(self.decode())
        self.embedded = self.e2e()
        self.seconds: dict[str, list[float]] = {"decode": [], "encode": [], "e2e": [], "cpu": []}

    def decode(self) -> list[np.ndarray]:
        prepared = prepare_files(self.entries, self.encoder.prepare, target=self.encoder.image_size,
                                 workers=self.workers)
        return [p.array for p in prepared if p.array is not None]

    def encode(self) -> None:
        for i in range(0, len(self.batch), self.batch_size):
            self.encoder.encode_prepared(self.batch[i : i + self.batch_size])

    def e2e(self) -> int:
        with tempfile.TemporaryDirectory() as tmp:
            col = glimpse.open(Path(tmp) / "bench", encoder=self.encoder)
            report = col.add([self.data], batch_size=self.batch_size, workers=self.workers)
            col.close()
        return report.embedded

    def run_once(self) -> None:
        for stage in ("decode", "encode", "e2e"):
            self.seconds[stage].append(timed(getattr(self, stage)))
        # CPU time on one thread barely moves with load from other processes (wall time on a
        # shared box does, and starved worker threads spin): the fair cost ratio between models.
        with torch_threads(1):
            start = time.process_time()
            self.encode()
            self.seconds["cpu"].append(time.process_time() - start)

    def rates(self) -> dict[str, float]:
        counts = {"decode": len(self.batch), "encode": len(self.batch), "e2e": self.embedded, "cpu": len(self.batch)}
        return {k: rate(counts[k], float(np.median(v))) for k, v in self.seconds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="a folder of images")
    parser.add_argument("--encoder", default="lite0-minilm",
                        help="encoder(s), comma-separated, each NAME or NAME@PRECISION; the first is the baseline "
                             "of the ratio columns")
    parser.add_argument("--precision", default=None, help="int8, fp32 or bf16 for every encoder without @ (default: the encoder's)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3, help="passes per stage; the median is reported")
    args = parser.parse_args()
    if not args.data.exists():
        raise SystemExit(f"no data at {args.data}: pass --data FOLDER")

    entries = list(scan([args.data]))
    names = [e.strip() for e in args.encoder.split(",") if e.strip()]
    print(f"{len(entries)} images under {args.data}; batch {args.batch_size}, {args.workers} decode workers")
    runs = []
    for label in names:
        name, _, precision = label.partition("@")
        precision = precision or args.precision
        encoder = create_encoder(name, **({"precision": precision} if precision else {}))
        runs.append(Stages(encoder, entries, args.data, args.batch_size, args.workers))
    for _ in range(args.repeat):  # interleaved, so a burst of load from elsewhere hits every encoder alike
        for stages in runs:
            stages.run_once()

    base = runs[0].rates()
    print(f"{'encoder':<22}{'px':>5}{'decode':>9}{'encoder':>9}{'end-to-end':>12}{'e2e/enc':>9}"
          f"{'e2e vs base':>13}{'1-thread CPU ms/img':>21}{'CPU vs base':>13}")
    for label, stages in zip(names, runs):
        r = stages.rates()
        enc = stages.encoder
        print(f"{label:<22}{enc.image_size:>5}{r['decode']:>9.1f}{r['encode']:>9.1f}{r['e2e']:>12.1f}"
              f"{r['e2e'] / r['encode']:>9.2f}{r['e2e'] / base['e2e']:>13.2f}{1000 / r['cpu']:>21.1f}"
              f"{base['cpu'] / r['cpu']:>13.2f}")
    print(f"img/s (median of {args.repeat}); base: {names[0]}")
    print("goals: end to end >= 300 img/s on 2 cores; end-to-end / encoder >= 0.90 (the model never waits on I/O)")
    load = os.getloadavg()
    print(f"load average at the end: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
