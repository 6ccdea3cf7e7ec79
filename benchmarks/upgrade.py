"""Encoder upgrade quality at every stage of the backfill: `glimpse upgrade` lite0-minilm -> lite2-minilm.

    nice -n 10 python benchmarks/upgrade.py [--data ../shared/data/captioned-dev] [--sample 400] [--seeds 0,1,2] [--per-image 2]

A lite0 collection of the captioned photos is upgraded with the engine's own ``upgrade`` (a
seeded sample re-embedded, the map fitted, the rest mapped, then backfilled) and measured on
the images the sample left out, so that 0% means every measured image holds a mapped vector:

- text->image R@10 (each caption's one relevant image), and
- copy detection mAP (the eval's seeded augmentations, ``--per-image`` copies per photo; one
  relevant original per copy, so AP = 1 / its rank),

for old/old (the lite0 collection, lite0 queries), new/new (a fresh lite2 collection, lite2
queries), and the upgraded collection (lite2 queries: every query runs in the new space) at
0%, 10%, 25%, 50%, 75% and 100% of the measured images re-embedded, for each backfill order
and sample seed (each seed samples, and so measures, other images). At 0% it also scores the
alternative, queries mapped new->old against the old vectors. The last table gives each stage's
mean and spread over the seeds, as shares of old/old on the same images. Goals (issue
13): >= 95% of old/old at 0%, never dropping as the backfill advances, and at 100% vectors
equal to the fresh lite2 collection's, bit for bit.

Each stage is scored in the ``MODES``: through the map, and dual-space (:mod:`glimpse.upgrade.dual`:
images there before the switch in the old space until the finish), against its baselines. ``--replay``
scores them on the stored lite0 and lite2 vectors with the engine's own sample and ``--orders`` (no
image model runs: minutes instead of an hour on a loaded machine; ``--modes`` picks the scorings),
and prints a table per order and seed; ``--latency`` times text and image queries through ``search``
(p50, p99, wall and CPU) on a collection during an upgrade against the same photos without one, just
after the switch and while the backfill runs. Cached collections and query vectors are keyed by :func:`vector_key`.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

import glimpse
from glimpse.encoders import create_encoder
from glimpse.eval.datasets import load_captioned, load_copydetect
from glimpse.metrics import mean_reciprocal_rank, ranks, recall_from_ranks
from glimpse.upgrade import POLICIES
from glimpse.encoders import l2_normalize
from glimpse.upgrade.backfill import _Run, doubt_of, least_certain_first, sampled_units, shuffled
from glimpse.upgrade.dual import calibration_items, on_new_scale
from glimpse.upgrade.maps import Pairs, SpaceMap, calibrate, fit_kind
from glimpse.upgrade.views import prompts
from glimpse.upgrade.state import active, read_order

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "captioned-dev"
OLD, NEW = "lite0-minilm", "lite2-minilm"
STAGES = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)
#: Dual-space scorings (:mod:`glimpse.upgrade.dual`) measured: (the old space's scale, how an image re-embedded
#: by the backfill scores: ``old`` its old score until the finish, ``blend`` (1 - w) old + w new with w the share
#: re-embedded, ``new`` its new score alone). ``dual`` is the engine's; the others are baselines (``blend``: the
#: previous default).
DUAL_MODES = {"dual": ("quantile", "old"), "dual, blended": ("quantile", "blend"), "dual, new alone": ("quantile", "new"),
              "dual, standing, new alone": ("standing", "new"), "dual, raw, new alone": ("raw", "new")}
#: How the upgraded collection scores during the backfill: every image through the map (``map``), or dual-space.
MODES = ("map", *DUAL_MODES)
LATENCY_QUERIES = 40


def plain(kind: str, queries: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """Cosines of ``queries`` against ``gallery`` rows, one space (``kind``: text or copies)."""
    return queries @ gallery.T


def vector_key(encoder) -> str:
    """What the cached collections and query vectors are keyed on: the encoder's name, version and
    precision, and a hash of its vectors for a fixed picture and text, so that anything else that
    changes vectors (the graph, its quantisation, the libraries) makes new caches too."""
    pixels = np.add.outer(np.arange(224), np.arange(224)).astype(np.uint8)
    probe = Image.fromarray(np.stack([pixels, pixels.T, 255 - pixels], axis=-1))
    vectors = np.concatenate([encoder.encode_images([probe]), encoder.encode_texts(["a photo of a dog."])])
    digest = hashlib.blake2b(vectors.astype(np.float32).tobytes(), digest_size=4).hexdigest()
    return f"{encoder.name}-v{encoder.version}-{getattr(encoder, 'precision', 'default')}-{digest}"


def embed_images(encoder, make, count: int, cache: Path) -> np.ndarray:
    if cache.exists():
        return np.load(cache)
    out = np.concatenate([encoder.encode_images([make(q) for q in range(s, min(count, s + 32))])
                          for s in range(0, count, 32)])
    np.save(cache, out)
    return out


def stored(col: glimpse.Collection, ids: np.ndarray) -> np.ndarray:
    col._sync()  # the committed vector file, as a search would read it
    return col._read_vectors(ids)


def collection(work: Path, images: Path, encoder: str) -> glimpse.Collection:
    """A collection of ``images`` indexed with ``encoder``, cached under ``work`` by :func:`vector_key`."""
    key = vector_key(create_encoder(encoder))
    col = glimpse.open(work / key, encoder=encoder)
    if not len(col):
        started = time.perf_counter()
        col.add([images])
        print(f"indexed {len(col)} images with {encoder} in {time.perf_counter() - started:.0f} s ({key})")
    return col


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--work", type=Path, default=Path("/tmp/glimpse-upgrade-bench"))
    parser.add_argument("--sample", type=int, default=400)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--per-image", type=int, default=2)
    parser.add_argument("--orders", default=POLICIES[0])
    parser.add_argument("--replay", action="store_true",
                        help="dual-space scoring only, replayed on the stored lite0 and lite2 vectors with the "
                             "engine's sample and --orders: no image model runs (minutes a seed)")
    parser.add_argument("--modes", default=";".join(["map", *DUAL_MODES]),
                        help="the replay's scorings, separated by ;: map and DUAL_MODES (default: all)")
    parser.add_argument("--latency", action="store_true",
                        help="only query latency, p50 and p99, of an upgrading collection against the lite0 one: "
                             "just after the switch (--sample images re-embedded), then while the backfill runs")
    parser.add_argument("--latency-queries", type=int, default=LATENCY_QUERIES)
    parser.add_argument("--latency-batch", type=int, default=32,
                        help="the backfill's batch size while --latency times queries (smaller: a slower backfill, "
                             "so that more queries meet it)")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    captioned = load_captioned(args.data)
    images = [Path(p) for p in captioned.tasks[0].database.paths]
    captions = captioned.tasks[0].queries.texts
    owner = np.array([j[0] for j in captioned.tasks[0].judgements[""].positives])
    copies = load_copydetect(args.data / "images", per_image=args.per_image)
    copy_task = copies.tasks[0]

    old = collection(args.work, args.data / "images", OLD)
    fresh = collection(args.work, args.data / "images", NEW)
    queries = {}
    for name, col in ((OLD, old), (NEW, fresh)):
        queries[name] = (col.encoder.encode_texts(captions),
                         embed_images(col.encoder, copy_task.queries.picture, len(copy_task.queries),
                                      args.work / f"copies-{col.path.name}-{args.per_image}.npy"))

    if args.latency:
        upgrade_latency(args, old, captions, copy_task)
        return
    prompt_pairs = None  # the replay's map's text pairs
    if args.replay:
        texts = prompts()
        prompt_pairs = (old.encoder.encode_texts(texts), fresh.encoder.encode_texts(texts))
    # stage -> order -> per seed: (R@10, mAP) as shares of old/old
    table: dict[str, dict[str, list[np.ndarray]]] = {}
    orders = args.orders.split(",")
    for seed in [int(v) for v in args.seeds.split(",")]:
        for order in orders:
            if args.replay:
                figures = replay(args, seed, order, images, owner, copy_task, old, fresh, queries, prompt_pairs)
            else:
                figures = run(args, seed, order, images, captions, owner, copy_task, old, fresh, queries)
            for stage, values in figures.items():
                table.setdefault(stage, {}).setdefault(order, []).append(values)
    how = " (replay)" if args.replay else ""
    print(f"\nsample {args.sample}, seeds {args.seeds}: mean (min-max) share of old/old\n")
    print("| collection | order | text->image R@10 | copy mAP |")
    print("|---|---|---|---|")
    for stage, by_order in table.items():
        for order, figures in by_order.items():
            r = np.array(figures)
            print(f"| {stage} | {order}{how} | {r[:, 0].mean():.1%} ({r[:, 0].min():.1%}-{r[:, 0].max():.1%}) |"
                  f" {r[:, 1].mean():.1%} ({r[:, 1].min():.1%}-{r[:, 1].max():.1%}) |")
    for order in orders:
        print(f"\nper seed, {order}{how}: text R@10 / copy mAP, share of old/old\n")
        print("| collection | " + " | ".join(f"seed {seed}" for seed in args.seeds.split(",")) + " |")
        print("|---|" + "---|" * len(args.seeds.split(",")))
        for stage, by_order in table.items():
            print(f"| {stage} | " + " | ".join(f"{t:.1%} / {c:.1%}" for t, c in by_order[order]) + " |")

class Judge:
    """The queries scored on a gallery (the ``measured`` images) and each one's relevant gallery row."""

    def __init__(self, measured: np.ndarray, owner: np.ndarray, copy_task, images: list[Path]):
        position = np.cumsum(measured) - 1  # image index -> gallery row
        index_of = {str(p): i for i, p in enumerate(images)}
        source = np.array([index_of[str(Path(copy_task.database.paths[j[0]]))]
                           for j in copy_task.judgements[""].positives])
        self.text_q = np.flatnonzero(measured[owner])
        self.text_rel = position[owner[self.text_q]]
        self.copy_q = np.flatnonzero(measured[source])
        self.copy_rel = position[source[self.copy_q]]

    def queries(self, vectors: tuple[np.ndarray, np.ndarray]) -> dict[str, np.ndarray]:
        return {"text": vectors[0][self.text_q], "copies": vectors[1][self.copy_q]}

    def measure(self, vectors: np.ndarray, text_vectors: np.ndarray, copy_vectors: np.ndarray, score=plain) -> np.ndarray:
        """(text R@10, copy mAP with one relevant original) of these queries against the gallery's ``vectors``."""
        r10 = recall_from_ranks(ranks(score("text", text_vectors[self.text_q], vectors), self.text_rel), 10)
        ap = mean_reciprocal_rank(ranks(score("copies", copy_vectors[self.copy_q], vectors), self.copy_rel))
        return np.array([r10, ap])


def dual_score(scale: str, reembedded: str, old_queries: dict[str, np.ndarray], old_gallery: np.ndarray,
               both_old: np.ndarray, both_new: np.ndarray, pending: np.ndarray, weight: float):
    """What dual-space search scores (glimpse.upgrade.dual): ``pending`` gallery images in the old space,
    on the new scale (from the images both encoders embedded: ``both_old``, ``both_new``), the rest (all
    there before the switch) as ``reembedded`` says (see DUAL_MODES; ``weight``: the share re-embedded);
    the new queries' old twins (``old_queries``) score the old space. With nothing pending the engine
    answers in the new space alone."""
    def score(kind: str, new_q: np.ndarray, new_g: np.ndarray) -> np.ndarray:
        new = new_q @ new_g.T
        if not pending.any():
            return new
        old_q = old_queries[kind]
        on_scale = on_new_scale(old_q @ old_gallery.T, old_q @ both_old.T, new_q @ both_new.T, scale)
        moved = {"old": on_scale, "new": new, "blend": (1 - weight) * on_scale + weight * new}[reembedded]
        return np.where(pending[None, :], on_scale, moved)
    return score


def timed(col: glimpse.Collection, ask: dict) -> tuple[float, float]:
    """One query's wall time and CPU time (of this process: every thread of the search, not the backfill's)."""
    wall, cpu = time.perf_counter(), time.process_time()
    col.search(**ask, k=10)
    return time.perf_counter() - wall, time.process_time() - cpu


def latency(plain: glimpse.Collection, upgrading: glimpse.Collection, captions: list[str], copy_task, tag: str,
            count: int = LATENCY_QUERIES, running=lambda: True) -> None:
    """Text and image query times through ``search`` (wall and CPU, p50 and p99) on a collection during an
    upgrade against ``plain``, the same photos without one, in turn (a text and an image query on each)
    so that both meet the same load (a backfill running in another process included); only the rounds
    that end while ``running()`` holds count, and the rounds stop when it no longer does."""
    pictures = [copy_task.queries.picture(q) for q in range(count)]
    for col in (plain, upgrading):  # loads what each path needs (models, the old encoder: once)
        col.search(text=captions[0], k=10)
        col.search(image=pictures[0], k=10)
    times = {(kind, name): [] for kind in ("text", "image") for name in ("no upgrade", "upgrading")}
    for caption, picture in zip(captions[:count], pictures):
        if not running():
            break
        round_ = {(kind, name): timed(col, ask) for kind, ask in (("text", {"text": caption}), ("image", {"image": picture}))
                  for name, col in (("no upgrade", plain), ("upgrading", upgrading))}
        if running():
            for key, value in round_.items():
                times[key].append(value)
    for kind in ("text", "image"):
        p = {name: np.percentile(np.array(times[kind, name]) * 1000, [50, 99], axis=0)  # [p50, p99] x [wall, cpu]
             for name in ("no upgrade", "upgrading")}
        for name, (p50, p99) in p.items():
            print(f"{tag} {kind} [{name}]: wall p50 {p50[0]:.0f} ms, p99 {p99[0]:.0f} ms; CPU p50 {p50[1]:.0f} ms, "
                  f"p99 {p99[1]:.0f} ms ({len(times[kind, name])} queries)")
        ratio = p["upgrading"] / p["no upgrade"]
        print(f"{tag} {kind}: upgrading / no upgrade: wall p50 x{ratio[0, 0]:.2f}, p99 x{ratio[1, 0]:.2f}; "
              f"CPU p50 x{ratio[0, 1]:.2f}, p99 x{ratio[1, 1]:.2f}")


def replay(args, seed: int, order_kind: str, images, owner, copy_task, old, fresh, queries,
           prompts: tuple[np.ndarray, np.ndarray]) -> dict[str, np.ndarray]:
    """Dual-space scoring at every stage without running the models: the engine's seeded sample and
    order (its own functions; ``uncertain`` from maps fitted on the sample and the ``prompts`` through
    both text towers, without the engine's extra views, at the kind its cross-validation picks here:
    ridge, penalty 1, text pairs 0.3), the old collection's vectors for images still waiting and the
    fresh lite2 collection's for re-embedded ones (a finished upgrade's vectors equal them bit for bit)."""
    old_ids, fresh_ids = item_ids(old, images), item_ids(fresh, images)
    to_fresh = dict(zip(old_ids.tolist(), fresh_ids.tolist()))
    runner = _Run(old, seed, 32, 1, None)
    units = runner._units(np.sort(old_ids))
    chosen = sampled_units(units, args.sample, seed)
    sampled = np.concatenate(chosen)
    rest = [unit for unit in (unit[~np.isin(unit, sampled)] for unit in units) if len(unit)]
    x, y = stored(old, sampled), stored(fresh, np.array([to_fresh[i] for i in sampled.tolist()], np.int64))
    pairs = Pairs(x, y, np.arange(len(sampled)), prompts)
    forward = calibrate(fit_kind("ridge", pairs, 1.0, 0.3), y, l2_normalize(prompts[1]))
    if order_kind == "uncertain":
        reverse = calibrate(fit_kind("ridge", pairs.reversed(), 1.0, 0.3), x, l2_normalize(prompts[0]))
        items = np.sort(np.concatenate(rest))
        vectors = stored(old, items)
        rest = least_certain_first(rest, items, doubt_of(vectors, forward(vectors), reverse))
    else:
        rest = shuffled(rest, seed)
    order_units = [*chosen, *rest]
    order = np.concatenate(order_units)
    ends = np.cumsum([len(unit) for unit in order_units])
    measured = ~np.isin(old_ids, sampled)
    judge = Judge(measured, owner, copy_task, images)
    old_gallery, new_gallery = stored(old, old_ids[measured]), stored(fresh, fresh_ids[measured])
    old_queries = judge.queries(queries[OLD])
    mapped_gallery = forward(old_gallery)
    base = judge.measure(old_gallery, *queries[OLD])
    out = {"old/old": base, "new/new": judge.measure(new_gallery, *queries[NEW])}
    tag = f"[seed {seed}, {order_kind}, replay]"
    for share in STAGES:
        want = len(sampled) + round(share * (len(order) - len(sampled)))
        done = int(ends[np.searchsorted(ends, want)]) if want < len(order) else len(order)  # whole batches
        pending = np.isin(old_ids[measured], order[done:])
        both = calibration_items(order[:done], old_ids)
        both_new = stored(fresh, np.array([to_fresh[i] for i in both.tolist()], np.int64))
        for mode in args.modes.split(";"):
            if mode == "map":  # what like, composed and vector queries meet: mapped vectors until re-embedded
                gallery = np.where(pending[:, None], mapped_gallery, new_gallery)
                figures = judge.measure(gallery, *queries[NEW])
            else:
                score = dual_score(*DUAL_MODES[mode], old_queries, old_gallery, stored(old, both), both_new, pending,
                                   done / len(order))
                figures = judge.measure(new_gallery, *queries[NEW], score)
            out[f"upgraded, {share:.0%} re-embedded [{mode}]"] = figures
            print(f"{tag} {1 - pending.mean():.0%} re-embedded [{mode}]: R@10 {figures[0]:.3f}, mAP {figures[1]:.3f} "
                  f"(old/old {base[0]:.3f}, {base[1]:.3f})")
    return {stage: figures / base for stage, figures in out.items()}


def upgrade_latency(args, old: glimpse.Collection, captions: list[str], copy_task) -> None:
    """Query latency on a copy of the lite0 collection upgraded to lite2 against the lite0 collection itself:
    just after the switch (the backfill paused), then while ``glimpse upgrade`` backfills in another process."""
    target = args.work / "latency"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(old.path, target)
    col = glimpse.open(target)
    col.upgrade(NEW, sample=args.sample, backfill=0, batch_size=args.latency_batch)  # the backfill's batches
    up = col.stats().upgrade
    latency(old, col, captions, copy_task, f"[switched, {up['reembedded']} of {up['images']} re-embedded, backfill paused]",
            args.latency_queries)
    backfill = subprocess.Popen([sys.executable, "-m", "glimpse.cli", "upgrade", "-c", str(target), "--keep-old",
                                 "--batch-size", str(args.latency_batch)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        while active(col._meta.get_meta())["done"] == up["reembedded"] and backfill.poll() is None:
            time.sleep(0.5)  # until its first batch is committed (the model loaded)
        first = col.stats().upgrade["reembedded"]
        latency(old, col, captions, copy_task, "[backfill running]", args.latency_queries,
                running=lambda: backfill.poll() is None)
        print(f"the backfill went from {first} to {col.stats().upgrade['reembedded']} of {up['images']} re-embedded "
              f"meanwhile (batches of {args.latency_batch})")
    finally:
        backfill.kill()
        backfill.wait()


def item_ids(col, paths: list[Path]) -> np.ndarray:
    return np.array([col._meta.item_for_path(str(p)) for p in paths], np.int64)


def run(args, seed: int, order: str, images, captions, owner, copy_task, old, fresh,
        queries) -> dict[str, np.ndarray]:
    """One upgrade of a copy of the lite0 collection, measured at every stage: stage -> shares of old/old."""
    tag = f"[seed {seed}, {order}]"
    target = args.work / f"upgrade-{order}"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(old.path, target)
    col = glimpse.open(target)
    started = time.perf_counter()
    col.upgrade(NEW, sample=args.sample, backfill=0, order=order, sample_seed=seed)
    up = col.stats().upgrade
    print(f"{tag} sample of {up['sample']} re-embedded, map fitted, switch in {time.perf_counter() - started:.0f} s;"
          f" map: {up['map']}, cross-validated {up['quality']}")
    state = active(col._meta.get_meta())
    sampled = set(read_order(target, state)[: state["sample"]].tolist())
    measured = np.array([i not in sampled for i in item_ids(col, images).tolist()])  # images of the gallery
    gallery = item_ids(col, images)[measured]
    judge = Judge(measured, owner, copy_task, images)
    print(f"{tag} {len(gallery)} measured images (the sample's {len(images) - len(gallery)} left out), "
          f"{len(judge.text_q)} captions, {len(judge.copy_q)} copies")
    measure = judge.measure

    old_gallery = stored(old, item_ids(old, images)[measured])
    old_queries = judge.queries(queries[OLD])

    def dual(mode: str, state: dict, pending: np.ndarray):
        both = calibration_items(read_order(target, state)[: state["done"]], col._live)  # as search picks them
        return dual_score(*DUAL_MODES[mode], old_queries, old_gallery, stored(old, both), stored(col, both), pending,
                          state["done"] / len(read_order(target, state)))

    base = measure(old_gallery, *queries[OLD])
    out = {"old/old": base, "new/new": measure(stored(fresh, item_ids(fresh, images)[measured]), *queries[NEW])}
    reverse = SpaceMap.load(target / state["reverse"])
    out["alternative at 0%: queries mapped new->old"] = measure(stored(old, item_ids(old, images)[measured]),
                                                                reverse(queries[NEW][0]), reverse(queries[NEW][1]))
    rest = len(read_order(target, state)) - state["sample"]
    for share in STAGES:
        state = active(col._meta.get_meta())
        want = state["sample"] + round(share * rest)
        if want > state["done"]:
            col.upgrade(backfill=want - state["done"], finish=False)
        state = active(col._meta.get_meta())  # whole batches: a stage may overshoot its share a little
        pending = np.isin(gallery, read_order(target, state)[state["done"] :])
        new_gallery = stored(col, gallery)
        for mode in MODES:
            score = plain if mode == "map" else dual(mode, state, pending)
            out[f"upgraded, {share:.0%} re-embedded [{mode}]"] = figures = measure(new_gallery, *queries[NEW], score)
            print(f"{tag} {1 - pending.mean():.0%} re-embedded [{mode}]: R@10 {figures[0]:.3f}, mAP {figures[1]:.3f} "
                  f"(old/old {base[0]:.3f}, {base[1]:.3f})")
        if share == 0.5:
            latency(old, col, captions, copy_task, tag)
    col.upgrade()  # finish
    fresh_vectors = stored(fresh, item_ids(fresh, images))
    final = stored(col, item_ids(col, images))
    print(f"{tag} finished: vectors equal to the fresh {NEW} collection's: {np.array_equal(final, fresh_vectors)}"
          f" (max |difference| {np.abs(final - fresh_vectors).max():.2e}); files: "
          + ", ".join(sorted(p.name for p in target.iterdir())))
    col.close()
    return {stage: figures / base for stage, figures in out.items()}


if __name__ == "__main__":
    main()
