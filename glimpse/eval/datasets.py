"""Dataset adapters: read benchmark files the user already has into retrieval tasks.

Nothing is downloaded. Every adapter returns a :class:`Dataset` of :class:`Task` objects
(:mod:`glimpse.eval.tasks`); a task says what the queries and the database are (image files,
texts, generated images or composed image+text pairs), which database items are relevant to
each query, which are ignored (junk, the query itself), and which protocol scores it (see
``protocols``).
A missing file raises :class:`DatasetError` naming the layout the adapter expects.

Adapters: :func:`load_captioned`, :func:`load_copydetect`, :func:`load_groups`,
:func:`load_revisitop`, :func:`load_classes`, :func:`load_composed`.
"""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import numpy as np
from PIL import Image

from ..ingest import IMAGE_EXTENSIONS
from ..query.adapt import read_captions, read_tsv
from . import augment as aug
from .tasks import Dataset, DatasetError, Items, Judgement, Task, open_image


def _read_tsv(path: Path, columns: tuple[str, ...], layout: str) -> list[dict[str, str]]:
    """Rows of a tab-separated file with a header that has at least ``columns``."""
    try:
        fields, rows = read_tsv(path, "the rows of")
    except ValueError as exc:
        raise DatasetError(str(exc)) from None
    if not rows or not set(columns) <= set(fields):
        names = " and ".join(f"'{c}'" for c in columns)
        raise DatasetError(f"{path} needs {names} columns. Expected layout:\n{layout}")
    return rows


def _need(path: Path, layout: str) -> Path:
    if not path.exists():
        raise DatasetError(f"{path} not found. Expected layout:\n{layout}")
    return path


def _images_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def _stamp(path: Path) -> str:
    """A file's identity for cache keys: path, size and mtime (a changed file is re-embedded)."""
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def _as_arrays(lists) -> list[np.ndarray]:
    return [np.asarray(sorted(x), dtype=np.int64) for x in lists]


# -- captioned pairs ------------------------------------------------------------------------

CAPTIONED_LAYOUT = """  DIR/captions.tsv     tab-separated, header 'image<TAB>caption', image paths relative to DIR
  (one or more rows per image), or
  DIR/dataset_flickr30k.json | dataset_coco.json   Karpathy splits, images under DIR/images/ (Flickr)
  or DIR/<filepath>/<filename> (COCO)"""


def load_captioned(path: str | Path, split: str | None = None) -> Dataset:
    """Image-caption pairs: text→image and image→text (R@1/5/10, MRR, median rank). ``split``: the
    Karpathy split (default ``test``); a captions.tsv has none, so one given for it is refused."""
    path = Path(path).expanduser()
    karpathy = [path] if path.suffix == ".json" else sorted(path.glob("dataset_*.json")) if path.is_dir() else []
    if karpathy:
        images, captions, owner = _karpathy(karpathy[0], split or "test")
        files = [karpathy[0]]
    else:
        if split is not None:
            raise DatasetError(f"--split picks a split of a Karpathy dataset_*.json; {path} has a captions.tsv, "
                               "which has none: leave --split out")
        tsv = path if path.suffix == ".tsv" else path / "captions.tsv"
        _need(tsv, CAPTIONED_LAYOUT)
        images, captions, owner = _captions_tsv(tsv)
        files = [tsv]
    if not captions:  # else a report of nothing, with exit 0
        raise DatasetError(f"{files[0]} has no image with a caption. Expected layout:\n{CAPTIONED_LAYOUT}")
    for p in images[:1] + images[-1:]:
        _need(p, CAPTIONED_LAYOUT)
    per_image: list[list[int]] = [[] for _ in images]
    for c, i in enumerate(owner):
        per_image[i].append(c)
    image_items, text_items = Items("images", paths=images), Items("texts", texts=captions)
    tasks = [
        Task("text→image", text_items, image_items, "recall", {"": Judgement(_as_arrays([[i] for i in owner]))}),
        Task("image→text", image_items, text_items, "recall", {"": Judgement(_as_arrays(per_image))}),
    ]
    return Dataset("captioned", path, tasks, files, {"images": len(images), "captions": len(captions)})


def _captions_tsv(tsv: Path) -> tuple[list[Path], list[str], list[int]]:
    try:
        pairs = read_captions(tsv)
    except ValueError as exc:
        raise DatasetError(f"{exc}. Expected layout:\n{CAPTIONED_LAYOUT}") from None
    index: dict[Path, int] = {}
    captions, owner = [], []
    for image, caption in pairs:
        index.setdefault(image, len(index))
        captions.append(caption)
        owner.append(index[image])
    return list(index), captions, owner


def _karpathy(file: Path, split: str) -> tuple[list[Path], list[str], list[int]]:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        entries = [e for e in data["images"] if e.get("split") == split]
        folder = file.parent / "images" if (file.parent / "images").is_dir() else file.parent
        images, captions, owner = [], [], []
        for e in entries:
            images.append(folder / e.get("filepath", "") / e["filename"])
            for s in e["sentences"]:
                captions.append(str(s["raw"]))
                owner.append(len(images) - 1)
    # The JSON is someone else's file: any other shape than Karpathy's is named, with the shape wanted.
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        why = f"no {exc} field" if isinstance(exc, KeyError) else str(exc)
        raise DatasetError(f"{file} is not a readable Karpathy JSON ({why}): it needs images[] with split, "
                           "filename and sentences[].raw") from None
    if not entries:
        raise DatasetError(f"{file} has no images in split {split!r} (Karpathy JSON: images[].split)")
    return images, captions, owner


# -- copy detection -------------------------------------------------------------------------


def load_copydetect(folder: str | Path, per_image: int = 4, seed: int = 0, max_side: int = 512) -> Dataset:
    """Seeded edited copies of every image in a folder; each copy's one relevant item is its original."""
    folder = Path(folder).expanduser()
    layout = "  FOLDER/ any images (searched recursively): each becomes a database item and the source of its copies"
    images = _images_under(_need(folder, layout))
    if not images:
        raise DatasetError(f"no images found under {folder}. Expected layout:\n{layout}")
    plan = aug.query_kinds(len(images), per_image)

    def make(q: int) -> Image.Image:
        source, kind = plan[q]
        # Decoding at a bounded size keeps edits fast; the encoder shrinks further anyway.
        return aug.augment(open_image(images[source], target=max_side), kind, aug.query_rng(seed, source, q))

    names = [f"{images[s].name} ({k})" for s, k in plan]
    key = ["copydetect", f"v{aug.AUGMENT_VERSION}", f"seed{seed}", f"side{max_side}", *map(_stamp, images), *names]
    queries = Items("generated", make=make, key=key, count=len(plan), names=names)
    kinds = np.array([k for _, k in plan])
    task = Task("copy→original", queries, Items("images", paths=images), "copy",
                {"": Judgement(_as_arrays([[s] for s, _ in plan]))},
                breakdown={k: np.flatnonzero(kinds == k) for k in aug.KINDS})
    return Dataset("copydetect", folder, [task], [],
                   {"images": len(images), "queries": len(plan), "per_image": per_image, "seed": seed,
                    "augment_version": aug.AUGMENT_VERSION})


# -- groups (INRIA Holidays, UKBench, groups.tsv) -------------------------------------------

GROUPS_LAYOUT = """  DIR/groups.tsv   header 'image<TAB>group[<TAB>query]' (paths relative to DIR; query = 1 marks
                   the queries; without the column every image is a query), or
  DIR/ukbench00000.jpg ...  UKBench: groups of 4 consecutive numbers, every image a query, or
  DIR/100000.jpg ...        INRIA Holidays: group = number // 100, the first of each group is the query"""


def load_groups(path: str | Path) -> Dataset:
    """Images in groups of the same scene/object: mAP with the query excluded (+ UKBench N-S)."""
    root = Path(path).expanduser()
    _need(root, GROUPS_LAYOUT)
    files: list[Path] = []
    if (root / "groups.tsv").exists():
        files = [root / "groups.tsv"]
        rows = _read_tsv(files[0], ("image", "group"), GROUPS_LAYOUT)
        images = [root / r["image"] for r in rows]
        groups = [r["group"] for r in rows]
        is_query = [r.get("query", "1").strip() in ("1", "true", "yes") for r in rows]
        style = "groups.tsv"
    else:
        images = _images_under(root)
        ukb = [re.fullmatch(r"ukbench(\d+)", p.stem) for p in images]
        hol = [re.fullmatch(r"(\d{6})", p.stem) for p in images]
        if images and all(ukb):
            groups = [str(int(m.group(1)) // 4) for m in ukb]
            is_query, style = [True] * len(images), "ukbench"
        elif images and all(hol):
            numbers = [int(m.group(1)) for m in hol]
            groups = [str(n // 100) for n in numbers]
            first = {}
            for n in numbers:
                first[n // 100] = min(first.get(n // 100, n), n)
            is_query, style = [first[n // 100] == n for n in numbers], "holidays"
        else:
            raise DatasetError(f"cannot tell the groups of the images in {root}. Expected layout:\n{GROUPS_LAYOUT}")
    members: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    queries = [i for i, q in enumerate(is_query) if q]
    positives = _as_arrays([[j for j in members[groups[i]] if j != i] for i in queries])
    task = Task("image→group", Items("images", paths=[images[i] for i in queries]), Items("images", paths=images),
                "groups", {"": Judgement(positives, _as_arrays([[i] for i in queries])),
                           # UKBench's N-S counts the query itself among the 4 expected.
                           "with query": Judgement(_as_arrays([members[groups[i]] for i in queries]))},
                options={"ns": style == "ukbench"})
    return Dataset("groups", root, [task], files, {"images": len(images), "queries": len(queries), "style": style})


# -- revisitop (Revisited Oxford / Paris) ---------------------------------------------------

REVISITOP_LAYOUT = """  DIR/gnd_roxford5k.pkl (or gnd_rparis6k.pkl)   the protocol's ground truth
  DIR/jpg/<name>.jpg                             every database and query image"""


class _PlainUnpickler(pickle.Unpickler):
    """Ground-truth files are pickles of dicts, lists and numpy arrays: load nothing else."""

    ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
               ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar")}

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a ground-truth file")


def revisitop_judgements(gnd: list[dict]) -> dict[str, Judgement]:
    """Easy / Medium / Hard as the protocol defines them.

    E: positives easy, ignored junk + hard. M: positives easy + hard, ignored junk.
    H: positives hard, ignored junk + easy.
    """
    def pick(*keys: str) -> list[np.ndarray]:
        return _as_arrays([np.concatenate([np.asarray(g.get(k, []), dtype=np.int64) for k in keys]) for g in gnd])

    return {  # Medium first: the main judgement (curves, worst queries)
        "M": Judgement(pick("easy", "hard"), pick("junk")),
        "E": Judgement(pick("easy"), pick("junk", "hard")),
        "H": Judgement(pick("hard"), pick("junk", "easy")),
    }


def load_revisitop(path: str | Path) -> Dataset:
    """Revisited Oxford/Paris: query crops against the database, mAP and mP@1/5/10 for E/M/H."""
    root = Path(path).expanduser()
    found = sorted(root.glob("gnd_*.pkl")) if root.is_dir() else [root] if root.suffix == ".pkl" else []
    if not found:
        raise DatasetError(f"no gnd_*.pkl under {root}. Expected layout:\n{REVISITOP_LAYOUT}")
    gnd_file = found[0]
    root = gnd_file.parent
    with open(gnd_file, "rb") as f:
        cfg = _PlainUnpickler(f).load()
    try:
        imlist, qimlist, gnd = list(cfg["imlist"]), list(cfg["qimlist"]), list(cfg["gnd"])
    except (KeyError, TypeError):
        raise DatasetError(f"{gnd_file} lacks imlist/qimlist/gnd. Expected layout:\n{REVISITOP_LAYOUT}") from None
    images = [root / "jpg" / f"{name}.jpg" for name in imlist]
    qpaths = [root / "jpg" / f"{name}.jpg" for name in qimlist]
    for p in images[:1] + qpaths[:1]:
        _need(p, REVISITOP_LAYOUT)
    boxes = [tuple(float(v) for v in g["bbx"]) if g.get("bbx") is not None else None for g in gnd]

    def make(q: int) -> Image.Image:
        im = open_image(qpaths[q])
        return im.crop(tuple(round(v) for v in boxes[q])) if boxes[q] else im  # the protocol's query crop

    stamp = [f"{_stamp(p)}|{b}" for p, b in zip(qpaths, boxes)]
    queries = Items("generated", make=make, key=["revisitop-query", *stamp], count=len(qpaths),
                    names=[p.name for p in qpaths])
    task = Task("query→landmark", queries, Items("images", paths=images), "revisitop", revisitop_judgements(gnd))
    return Dataset("revisitop", root, [task], [gnd_file],
                   {"name": gnd_file.stem[4:], "images": len(images), "queries": len(qpaths)})


# -- labelled classes (hashing protocol) ----------------------------------------------------

CLASSES_LAYOUT = """  DIR/<class>/<image>       one folder per class (single label), or
  DIR/labels.tsv            header 'image<TAB>labels[<TAB>split]': labels separated by ',' (multi-label);
                            split = query | database (otherwise queries are sampled per class)"""


def load_classes(path: str | Path, queries: int = 1000, seed: int = 0, map_at: int = 1000) -> Dataset:
    """Hashing protocol: queries against a database; relevant = shares a label. mAP@all and mAP@k."""
    root = Path(path).expanduser()
    _need(root, CLASSES_LAYOUT)
    files: list[Path] = []
    splits: list[str] | None = None
    if (root / "labels.tsv").exists():
        files = [root / "labels.tsv"]
        rows = _read_tsv(files[0], ("image", "labels"), CLASSES_LAYOUT)
        paths = [root / r["image"] for r in rows]
        labels = [frozenset(x.strip() for x in r["labels"].split(",") if x.strip()) for r in rows]
        if "split" in rows[0]:
            splits = [r["split"].strip().lower() for r in rows]
    else:
        paths, labels = [], []
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            for image in _images_under(folder):
                paths.append(image)
                labels.append(frozenset([folder.name]))
    if len(paths) < 2:
        raise DatasetError(f"fewer than 2 labelled images under {root}. Expected layout:\n{CLASSES_LAYOUT}")
    if splits is not None:
        is_query = np.array([s == "query" for s in splits])
    else:
        is_query = _sample_queries(labels, queries, seed)
    q_idx, db_idx = np.flatnonzero(is_query), np.flatnonzero(~is_query)
    if not len(q_idx) or not len(db_idx):
        raise DatasetError("the labelled-classes protocol needs both queries and database images")
    db_labels = [labels[i] for i in db_idx]
    positives = _as_arrays([[j for j, lab in enumerate(db_labels) if lab & labels[i]] for i in q_idx])
    task = Task("image→class", Items("images", paths=[paths[i] for i in q_idx]),
                Items("images", paths=[paths[i] for i in db_idx]), "hashing", {"": Judgement(positives)},
                options={"map_at": min(map_at, len(db_idx))})
    multi = any(len(lab) > 1 for lab in labels)
    return Dataset("classes", root, [task], files,
                   {"images": len(paths), "queries": len(q_idx), "database": len(db_idx),
                    "classes": len(set().union(*labels)), "multi_label": multi, "seed": seed})


def _sample_queries(labels: list[frozenset], n: int, seed: int) -> np.ndarray:
    """About ``n`` queries (at most a tenth of the images), drawn evenly across first labels."""
    n = max(1, min(n, len(labels) // 10 or 1))
    rng = np.random.default_rng(seed)
    by_class: dict[str, list[int]] = {}
    for i, lab in enumerate(labels):
        by_class.setdefault(min(lab) if lab else "", []).append(i)
    per_class = max(1, n // len(by_class))
    chosen = np.zeros(len(labels), bool)
    for members in by_class.values():
        chosen[rng.choice(members, size=min(per_class, len(members) - 1 or 1), replace=False)] = True
    return chosen


# -- composed triplets (CIRR, FashionIQ) ----------------------------------------------------

COMPOSED_LAYOUT = """  CIRR:      DIR/captions/cap.rc2.<split>.json and DIR/image_splits/split.rc2.<split>.json
             (name -> relative image path), images under DIR
  FashionIQ: DIR/captions/cap.<category>.<split>.json, DIR/image_splits/split.<category>.<split>.json
             and DIR/images/<name>.png|.jpg"""


def load_composed(path: str | Path, split: str = "val", category: str = "dress") -> Dataset:
    """Reference image + modification text -> target: R@K, and CIRR's R_subset@K."""
    root = Path(path).expanduser()
    cirr = root / "captions" / f"cap.rc2.{split}.json"
    if cirr.exists():
        return _cirr(root, cirr, split)
    fiq = root / "captions" / f"cap.{category}.{split}.json"
    if fiq.exists():
        return _fashioniq(root, fiq, split, category)
    raise DatasetError(f"no CIRR or FashionIQ captions for split {split!r} under {root}. "
                       f"Expected layout:\n{COMPOSED_LAYOUT}")


def _composed_task(names: list[str], paths: list[Path], triplets: list[tuple[str, str, str, list[str] | None]],
                   ks: tuple[int, ...]) -> Task:
    index = {n: i for i, n in enumerate(names)}
    missing = sorted({n for t in triplets for n in t[:2] if n not in index})
    if missing:
        raise DatasetError(f"{len(missing)} reference/target images are not in the split, e.g. {missing[:3]}")
    refs = [index[r] for r, _, _, _ in triplets]
    judgements = {"": Judgement(_as_arrays([[index[t]] for _, t, _, _ in triplets]), _as_arrays([[r] for r in refs]))}
    if all(t[3] is not None for t in triplets):
        # R_subset: rank only within the query's group of visually similar images, minus the reference.
        everything = np.arange(len(names))
        subsets = [np.asarray([index[m] for m in t[3] if m in index], dtype=np.int64) for t in triplets]
        judgements["subset"] = Judgement(judgements[""].positives,
                                         _as_arrays([np.union1d(np.setdiff1d(everything, s), [r])
                                                     for s, r in zip(subsets, refs)]))
    queries = Items("composed", paths=paths, texts=[t[2] for t in triplets], refs=refs)
    return Task("image+text→image", queries, Items("images", paths=paths), "composed", judgements,
                options={"ks": ks})


def _cirr(root: Path, captions: Path, split: str) -> Dataset:
    splits = _need(root / "image_splits" / f"split.rc2.{split}.json", COMPOSED_LAYOUT)
    name_to_path = json.loads(splits.read_text(encoding="utf-8"))
    names = sorted(name_to_path)
    paths = [(root / name_to_path[n]).resolve() for n in names]
    rows = json.loads(captions.read_text(encoding="utf-8"))
    if rows and "target_hard" not in rows[0]:
        raise DatasetError(f"{captions} has no targets (CIRR's test split is hidden): use --split val")
    triplets = [(r["reference"], r["target_hard"], r["caption"], list(r["img_set"]["members"])) for r in rows]
    task = _composed_task(names, paths, triplets, (1, 5, 10, 50))
    return Dataset("composed", root, [task], [captions, splits], {"style": "cirr", "split": split,
                                                                   "images": len(names), "queries": len(triplets)})


def _fashioniq(root: Path, captions: Path, split: str, category: str) -> Dataset:
    splits = _need(root / "image_splits" / f"split.{category}.{split}.json", COMPOSED_LAYOUT)
    names = sorted(json.loads(splits.read_text(encoding="utf-8")))
    paths = []
    for n in names:
        found = [root / "images" / f"{n}{ext}" for ext in (".png", ".jpg")]
        paths.append(next((p for p in found if p.exists()), found[0]))
    rows = json.loads(captions.read_text(encoding="utf-8"))
    # FashionIQ gives two captions per triplet; the usual query joins them.
    triplets = [(r["candidate"], r["target"], " and ".join(c.strip(" .") for c in r["captions"]), None) for r in rows]
    task = _composed_task(names, paths, triplets, (10, 50))
    return Dataset("composed", root, [task], [captions, splits], {"style": "fashioniq", "category": category,
                                                                   "split": split, "images": len(names),
                                                                   "queries": len(triplets)})
