"""CLIP-class encoders on the CPU: preprocessing, image batches fp32 against bf16, one text query.

    python benchmarks/clip_encoders.py [--model ViT-B-32] [--pretrained FILE_OR_TAG] [--images 96]

Without ``--pretrained``, a ViT-B-32 with random weights is built and saved to a temporary
folder (no weights download here): its speed is the real model's, its bf16 cosines are only
indicative. Prints img/s, the bf16/fp32 speed ratio with the cosine between their vectors,
and the median latency of one text query with torch's default threads against one thread.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from glimpse.encoders import create_encoder
from glimpse.encoders.open_clip import import_open_clip
from glimpse.encoders.runtime import torch_threads
from glimpse.ingest import scan
from ingest import median_seconds  # benchmarks/ingest.py, beside this script

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "captioned-dev"


def random_checkpoint(model: str, folder: Path) -> str:
    torch.manual_seed(0)
    path = folder / "random.pt"
    torch.save(import_open_clip().create_model(model).state_dict(), path)
    return str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="a folder of images")
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--pretrained", default=None)
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        pretrained = args.pretrained or random_checkpoint(args.model, Path(tmp))
        encoders = {p: create_encoder("open_clip", model=args.model, pretrained=pretrained, device="cpu", precision=p)
                    for p in ("fp32", "bf16")}
    fp32 = encoders["fp32"]
    paths = [e.path for e in scan([args.data])][: args.images]
    images = [Image.open(p).convert("RGB") for p in paths]
    print(f"open_clip {args.model} ({'random weights' if args.pretrained is None else pretrained}), "
          f"{len(images)} photos, batch {args.batch_size}, {torch.get_num_threads()} torch threads")

    seconds = median_seconds(lambda: [fp32.prepare(im) for im in images], 3)
    print(f"prepare (one thread, decoded photo -> {fp32.image_size} px): {len(images) / seconds:,.0f} img/s")
    batch = np.stack([fp32.prepare(im) for im in images])
    chunks = [batch[i : i + args.batch_size] for i in range(0, len(batch), args.batch_size)]
    vectors, rates = {}, {}
    for precision, encoder in encoders.items():
        encoder.encode_prepared(chunks[0])  # warm-up
        seconds = median_seconds(lambda e=encoder: [e.encode_prepared(c) for c in chunks], args.repeat)
        rates[precision] = len(batch) / seconds
        vectors[precision] = np.concatenate([encoder.encode_prepared(c) for c in chunks])
        print(f"encode {precision}: {rates[precision]:,.1f} img/s")
    cos = (vectors["fp32"] * vectors["bf16"]).sum(1)
    print(f"bf16 / fp32 speed: {rates['bf16'] / rates['fp32']:.2f}x; cosine bf16 vs fp32: "
          f"min {cos.min():.4f}, mean {cos.mean():.4f}")

    queries = ["a dog running on the beach", "two people on a red bus", "a bowl of soup"]
    fp32.encode_texts(queries[:1])

    def one_query_each() -> None:
        for q in queries:
            fp32._encode_texts([q])  # torch's default threads

    default = median_seconds(one_query_each, args.repeat * 3) / len(queries)
    with torch_threads(1):
        single = median_seconds(one_query_each, args.repeat * 3) / len(queries)
    print(f"one text query: {default * 1000:.1f} ms with {torch.get_num_threads()} threads, "
          f"{single * 1000:.1f} ms with 1 thread ({default / single:.2f}x)")


if __name__ == "__main__":
    main()
