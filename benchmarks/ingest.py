"""Ingest throughput: decode alone, encoder alone, end to end, and their ratio.

    python benchmarks/ingest.py [--data ../shared/data/captioned-dev] [--encoder lite0-minilm[,lite1-minilm,...]]
    python benchmarks/ingest.py --encoder lite0-minilm@fp32,lite0-minilm@int8   # one encoder at two precisions

Goals (issue #2, default encoder, 2-core machine): end-to-end >= 300 img/s and
end-to-end / encoder-alone >= 0.9, i.e. the model never waits on I/O. Several encoders run
interleaved in one process and are compared with the first. Each stage also gets the process's CPU
time per image (every thread together: decode workers, the model's runs, SQLite), a cost that
depends far less than img/s on other jobs' load on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

import glimpse
from glimpse.encoders import create_encoder
from glimpse.ingest import prepare_files, scan

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "captioned-dev"


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def timed(fn) -> tuple[float, float]:
    """Wall seconds and process CPU seconds (all threads) of ``fn()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


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
        self.seconds: dict[str, list[float]] = {stage: [] for stage in STAGES}
        self.cpu: dict[str, list[float]] = {stage: [] for stage in STAGES}

    def decode(self) -> list[np.ndarray]:
        prepared = prepare_files(self.entries, self.encoder.prepare, target=self.encoder.image_size,
                                 workers=self.workers)
        return [p.array for p in prepared if p.array is not None]

    def encode(self) -> None:
        # As ingest calls the encoder: ``concurrent_batches`` batches at once.
        batches = [self.batch[i : i + self.batch_size] for i in range(0, len(self.batch), self.batch_size)]
        with ThreadPoolExecutor(self.encoder.concurrent_batches) as pool:
            list(pool.map(self.encoder.encode_prepared, batches))

    def e2e(self) -> int:
        with tempfile.TemporaryDirectory() as tmp:
            col = glimpse.open(Path(tmp) / "bench", encoder=self.encoder)
            report = col.add([self.data], batch_size=self.batch_size, workers=self.workers)
            col.close()
        return report.embedded

    def run_once(self) -> None:
        for stage in STAGES:
            wall, cpu = timed(getattr(self, stage))
            self.seconds[stage].append(wall)
            self.cpu[stage].append(cpu)

    def counts(self) -> dict[str, int]:
        return {"decode": len(self.batch), "encode": len(self.batch), "e2e": self.embedded}

    def rates(self) -> dict[str, float]:
        return {k: rate(self.counts()[k], float(np.median(v))) for k, v in self.seconds.items()}

    def cpu_ms(self) -> dict[str, float]:
        """Median process CPU milliseconds per image of each stage."""
        return {k: 1000 * float(np.median(v)) / self.counts()[k] for k, v in self.cpu.items()}


STAGES = ("decode", "encode", "e2e")


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
          f"{'e2e vs base':>13}   CPU ms/img: decode encoder end-to-end")
    for label, stages in zip(names, runs):
        r, cpu = stages.rates(), stages.cpu_ms()
        print(f"{label:<22}{stages.encoder.image_size:>5}{r['decode']:>9.1f}{r['encode']:>9.1f}{r['e2e']:>12.1f}"
              f"{r['e2e'] / r['encode']:>9.2f}{r['e2e'] / base['e2e']:>13.2f}"
              f"{cpu['decode']:>20.2f}{cpu['encode']:>8.2f}{cpu['e2e']:>11.2f}")
    print(f"img/s (median of {args.repeat}); base: {names[0]}")
    print("goals: end to end >= 300 img/s on 2 cores; end-to-end / encoder >= 0.90 (the model never waits on I/O)")
    load = os.getloadavg()
    print(f"load average at the end: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
