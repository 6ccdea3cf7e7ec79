"""Regional ConSE: does classifying regions of an image, not only the whole, help text->image?

    nice -n 10 python benchmarks/regions.py [--data ../shared/data/captioned-dev] [--crops]

The default encoder's semantic half is ``softmax(logits / 2.5) @ class vectors`` with the logits
of the mean-pooled 7x7x1280 feature map. The classifier is linear, so it also gives logits for any
region of that map at almost no cost; a caption names several things, and one dominant class can
win the global softmax. Each setting pools per-region class evidence and mixes it with the global
distribution (``(1 - mix) * global + mix * regions``) before weighting the centred prompt vectors:

- ``prob``: softmax per cell of a g x g grid of the map (cells overlap where 7 % g != 0) at a
  temperature of its own, pooled over cells by mean, max or GeM (p 2, 4), renormalised;
- ``lse``: the cells' logits pooled by log-mean-exp at sharpness r (r -> 0: the global logits), one softmax;
- ``maxlogit``: each class's largest cell logit, one softmax;
- ``semvec``: the mean of the cells' own unit semantic vectors, mixed with the global one;
- ``crops`` (with ``--crops``; costs the network 4 more times per image): four overlapping
  128-px quadrants of the 224-px input, upscaled to 224 and classified whole.

The image model runs in torch fp32 (the ONNX graph does not expose the feature map), so the
baseline reads a little off the int8 default's figures. Against overfitting, settings are scored
on the split ``glimpse eval captioned --adapt`` uses (seed 0): chosen on the tuning half (its
captions against its images), reported on the other half and on all images; the best of each family
on the tuning half also after ``glimpse adapt`` (ridge, contrastive) trained on the tuning half.
Image vectors are the full 1664-d ones (visual half unchanged), rounded to float16 as collections
hold them. Results and the decision: benchmarks/QUALITY_NOTES.md.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from glimpse.encoders import bridge, create_encoder  # noqa: E402
from glimpse.eval.datasets import load_captioned, open_image  # noqa: E402
from glimpse.metrics import median_of_ranks, ranks  # noqa: E402
from glimpse.query.adapt import fit_adapter, held_out_split  # noqa: E402

GRIDS = (2, 3, 4, 7)
REGION_TEMPERATURES = (1.5, 2.5, 3.5, 5.0, 7.0, 10.0)
MIXES = (0.25, 0.5, 1.0)
QUADRANTS = ((0, 0, 128, 128), (96, 0, 224, 128), (0, 96, 128, 224), (96, 96, 224, 224))


def features(encoder: bridge.BridgeEncoder, paths: list[Path], crops: bool) -> dict[str, np.ndarray]:
    """Feature maps (n, 1280, 7, 7) of the 224-px inputs and, with ``crops``, the logits (n, 4, 1000)
    of their four quadrants, in torch fp32."""
    import torch

    model = encoder._image()

    def run(pixels: list[np.ndarray]) -> torch.Tensor:
        x = torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).float()
        x = x.sub_(127.0).div_(128.0).contiguous(memory_format=torch.channels_last)
        return model.extract_features(x).float()

    maps, quadrant_logits = [], []
    with torch.inference_mode():
        for start in range(0, len(paths), 16):
            pixels = [encoder.prepare(open_image(p)) for p in paths[start : start + 16]]
            maps.append(run(pixels).numpy())
            if crops:
                parts = [np.asarray(Image.fromarray(a).resize((224, 224), Image.Resampling.BICUBIC, box=box))
                         for a in pixels for box in QUADRANTS]
                quadrant_logits.append(model._fc(run(parts).mean(dim=(2, 3))).numpy().reshape(-1, 4, 1000))
    out = {"fmap": np.concatenate(maps)}
    if crops:
        out["crops"] = np.concatenate(quadrant_logits)
    return out


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "captioned-dev")
    ap.add_argument("--crops", action="store_true", help="also classify four upscaled quadrants (4x the network)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    encoder = create_encoder("lite0-minilm", precision="bf16")
    task = load_captioned(args.data).tasks[0]
    owner = np.array([int(p[0]) for p in task.judgements[""].positives])
    paths = [Path(task.database.paths[i]) for i in owner]  # row i: caption i's image
    feats = features(encoder, paths, args.crops)
    texts = np.zeros((len(paths), encoder.dim), np.float32)
    texts[:, bridge.VISUAL_DIM :] = encoder.text_semantic(list(task.queries.texts))
    texts = texts.astype(np.float16).astype(np.float32)

    fmap = torch.from_numpy(feats["fmap"])
    fc = encoder._image()._fc
    classes = torch.from_numpy(encoder.class_vectors())
    normalize = torch.nn.functional.normalize
    with torch.inference_mode():
        glob = fc(fmap.mean(dim=(2, 3)))
        cells = {g: fc(torch.nn.functional.adaptive_avg_pool2d(fmap, g).flatten(2).transpose(1, 2)) for g in GRIDS}
        gem = fmap.clamp(min=1e-6).pow(bridge.GEM_P).mean(dim=(2, 3)).pow(1.0 / bridge.GEM_P)
    visual = normalize(gem, dim=1)
    w_s = float(np.sqrt(1.0 - bridge.VISUAL_WEIGHT**2))
    p_glob = torch.softmax(glob / bridge.TEMPERATURE, dim=1)
    sem_glob = normalize(p_glob @ classes, dim=1)

    train = ~held_out_split(len(paths), 0.5, 0)[owner]
    tune, held, every = np.flatnonzero(train), np.flatnonzero(~train), np.arange(len(paths))

    def images(semantic: torch.Tensor) -> np.ndarray:
        out = normalize(torch.cat([bridge.VISUAL_WEIGHT * visual, w_s * normalize(semantic, dim=1)], dim=1), dim=1)
        return out.numpy().astype(np.float16).astype(np.float32)

    def scored(t: np.ndarray, i: np.ndarray) -> tuple[float, float, str]:
        r = ranks(t @ i.T, np.arange(len(t)))
        r1, r10 = float(np.mean(r <= 1)), float(np.mean(r <= 10))
        return r10, r1, f"{r1:.3f} / {r10:.3f}, {median_of_ranks(r):.0f}"

    best: dict[str, tuple[tuple[float, float], str, np.ndarray]] = {}

    def row(family: str, name: str, semantic: Callable[[], torch.Tensor]) -> None:
        with torch.inference_mode():
            vecs = images(semantic())
        cells_ = [scored(texts[idx], vecs[idx]) for idx in (tune, held, every)]
        print(f"| {family} | {name} | " + " | ".join(c[2] for c in cells_) + " |", flush=True)
        key = cells_[0][:2]
        if family not in best or key > best[family][0]:
            best[family] = (key, name, vecs)

    def pooled(p: torch.Tensor, how: str) -> torch.Tensor:
        if how in ("mean", "max"):
            q = p.mean(1) if how == "mean" else p.amax(1)
        else:  # "gemP": GeM with exponent P
            q = p.pow(float(how[3:])).mean(1).pow(1.0 / float(how[3:]))
        return q / q.sum(1, keepdim=True)

    print("| family | setting | tuning half | other half | all |\n|---|---|---|---|---|")
    row("global (today)", f"T {bridge.TEMPERATURE}", lambda: p_glob @ classes)
    for g in GRIDS:
        for t in REGION_TEMPERATURES:
            p = torch.softmax(cells[g] / t, dim=2)
            for how in ("mean", "max", "gem2", "gem4"):
                for mix in MIXES:
                    row("prob", f"grid {g}, T {t}, {how}, mix {mix}",
                        lambda p=p, how=how, mix=mix: ((1 - mix) * p_glob + mix * pooled(p, how)) @ classes)
            for mix in MIXES:
                row("semvec", f"grid {g}, T {t}, mix {mix}",
                    lambda p=p, mix=mix: (1 - mix) * sem_glob + mix * normalize(p @ classes, dim=2).mean(1))
        for t in (2.5, 3.0, 3.5, 5.0, 7.0):
            for r in (0.05, 0.1, 0.2, 0.5):
                lse = (torch.logsumexp(r * cells[g], dim=1) - np.log(cells[g].shape[1])) / r
                row("lse", f"grid {g}, r {r}, T {t}", lambda lse=lse, t=t: torch.softmax(lse / t, dim=1) @ classes)
            row("maxlogit", f"grid {g}, T {t}", lambda g=g, t=t: torch.softmax(cells[g].amax(1) / t, dim=1) @ classes)
    if args.crops:
        quads = torch.from_numpy(feats["crops"])
        for t in (2.5, 3.5, 5.0):
            p = torch.softmax(quads / t, dim=2)
            for how in ("mean", "max"):
                for mix in MIXES:
                    row("crops", f"T {t}, {how}, mix {mix}",
                        lambda p=p, how=how, mix=mix: ((1 - mix) * p_glob + mix * pooled(p, how)) @ classes)

    print("\nBest of each family on the tuning half (R@10, then R@1), then adapted on the tuning half:")
    print("| family | setting | tuning half | other half | all | other half, ridge | other half, contrastive |")
    print("|---|---|---|---|---|---|---|")
    for family, (_, name, vecs) in best.items():
        cells_ = [scored(texts[idx], vecs[idx])[2] for idx in (tune, held, every)]
        for kind in ("ridge", "contrastive"):
            adapter = fit_adapter(texts[tune], vecs[tune], kind=kind, seed=0)
            cells_.append(scored(adapter(texts[held]), vecs[held])[2])
        print(f"| {family} | {name} | " + " | ".join(cells_) + " |", flush=True)


if __name__ == "__main__":
    main()
