"""How close are lite0-minilm's int8 image vectors to fp32's on this CPU, and what do they cost?

    nice -n 10 python benchmarks/int8_vs_fp32.py [--data ../shared/data/captioned-dev] [--seven-bit dense,none,all]

For each choice of convolutions quantised with 7-bit weights (``dense``: the default, the
non-depthwise ones; ``none``: 8 bits everywhere, the default before; ``all``), the int8 graph is
built in a temporary cache and every photo's image vector compared with fp32's (cosine mean /
median / min), with the encoder's process CPU ms per image (best of 2 passes) and text->image
R@10 of each caption against all photos. Results: README, "The default encoder, measured".
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from glimpse.encoders import lite_onnx  # noqa: E402
from glimpse.encoders.bridge import BridgeEncoder, default_cache_dir  # noqa: E402

DENSE = lite_onnx._dense_conv_weights


def _all_conv_weights(path: Path) -> list[str]:
    return [node.input[1] for node in onnx.load(path).graph.node if node.op_type == "Conv"]


SEVEN_BIT = {"dense": DENSE, "none": lambda path: [], "all": _all_conv_weights}


def vectors(encoder: BridgeEncoder, batch: np.ndarray) -> tuple[np.ndarray, float]:
    """The image vectors of ``batch`` and the best of 2 passes' process CPU ms per image."""
    encoder.encode_prepared(batch[:16])  # builds or loads the graph
    best = np.inf
    for _ in range(2):
        start = time.process_time()
        out = encoder.encode_prepared(batch)
        best = min(best, time.process_time() - start)
    return out, 1000 * best / len(batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "captioned-dev")
    parser.add_argument("--seven-bit", default="dense,none", help="comma-separated: dense, none, all")
    args = parser.parse_args()
    with open(args.data / "captions.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))  # one caption per photo
    with tempfile.TemporaryDirectory(prefix="glimpse-int8-bench-") as tmp:
        cache = Path(tmp)
        for prompts in default_cache_dir().glob("minilm-v*-prompts-*.npy"):  # about 31 CPU s to recompute
            shutil.copy(prompts, cache)
        fp32 = BridgeEncoder(precision="fp32", cache_dir=cache)
        batch = np.stack([fp32.prepare(Image.open(args.data / row["image"]).convert("RGB")) for row in rows])
        texts = fp32.encode_texts([row["caption"] for row in rows])
        reference, ms = vectors(fp32, batch)
        print(f"{len(batch)} photos; fp32: {ms:.2f} CPU ms/img, R@10 {recall(texts, reference):.3f}")
        for choice in args.seven_bit.split(","):
            lite_onnx._dense_conv_weights = SEVEN_BIT[choice]
            lite_onnx.QUANTISATION = f"benchmark-{choice}"  # a graph per choice
            got, ms = vectors(BridgeEncoder(precision="int8", cache_dir=cache), batch)
            cos = np.sum(got * reference, axis=1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(reference, axis=1))
            print(f"int8, 7-bit weights in {choice}: {ms:.2f} CPU ms/img, cosine to fp32 mean {cos.mean():.4f} "
                  f"median {np.median(cos):.4f} min {cos.min():.4f}, R@10 {recall(texts, got):.3f}")
        lite_onnx._dense_conv_weights = DENSE


def recall(texts: np.ndarray, images: np.ndarray, k: int = 10) -> float:
    """Share of captions whose own photo (caption i, photo i) is in the top ``k`` of all photos."""
    images = images / np.linalg.norm(images, axis=1, keepdims=True)
    scores = texts @ images.T
    own = scores[np.arange(len(texts)), np.arange(len(texts))]
    return float(np.mean((scores > own[:, None]).sum(axis=1) < k))


if __name__ == "__main__":
    main()
