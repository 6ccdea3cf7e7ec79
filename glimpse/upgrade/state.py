"""What an upgrade records in the collection's metadata (key ``upgrade``), and what readers need from it.

Phases: ``sampling`` (the collection still answers in the old space; a seeded sample is being
re-embedded into the new vector file), then, in one commit (the switch), ``backfilling``: the
collection's encoder and vector file are the new ones, every item not re-embedded yet holds
its old vector mapped into the new space, and the backfill overwrites those rows with real
embeddings in the order file's order. ``done`` counts the order's items re-embedded: items
``order[:done]`` hold real vectors (so do items added since the switch). Finishing deletes the
key (and the old files); aborting restores the old encoder's keys and deletes it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..storage.arrays import read_arrays

KEY = "upgrade"
#: The collection facts that name its encoder; an upgrade swaps them at the switch.
ENCODER_KEYS = ("encoder", "encoder_version", "dim", "encoder_options")
#: What to do about a damaged file of the upgrade under way (its order or a map).
UPGRADE_REMEDY = "restore it from a backup, or abort the upgrade (glimpse upgrade --abort)"


def active(meta: dict) -> dict | None:
    return meta.get(KEY) or None


def switched(meta: dict) -> bool:
    """True once queries run in the new encoder's space (the collection's encoder is the new one)."""
    state = active(meta)
    return state is not None and state["phase"] == "backfilling"


def encoder_facts(meta: dict) -> dict:
    """What a reader compares to notice a switch, an abort or a finish: the recorded encoder and
    vector file, and the backfill under way (its end leaves vectors the reader's index may not have seen)."""
    state = active(meta)
    return {"vectors": meta.get("vectors"), **{k: meta.get(k) for k in ENCODER_KEYS},
            "backfill": state["order"] if switched(meta) else None}


def owned_files(meta: dict) -> set[str]:
    """Files of the collection's folder that the upgrade under way still needs."""
    state = active(meta)
    if state is None:
        return set()
    kept_adapter = {state["adapt"]["file"]} if state.get("adapt") else set()  # the old space's, for an abort
    return {state["old"]["vectors"], state["new"]["vectors"], state["order"], state["map"], state["reverse"], *kept_adapter}


def read_order(folder: Path, state: dict) -> np.ndarray:
    """The item ids in the order they are re-embedded."""
    return read_arrays(folder / state["order"], ("",), UPGRADE_REMEDY)[""][0]


def read_units(folder: Path, state: dict) -> list[np.ndarray]:
    """The order, cut into the batches it is re-embedded in."""
    ids, batch = read_arrays(folder / state["order"], ("",), UPGRADE_REMEDY)[""]
    return np.split(ids, np.flatnonzero(np.diff(batch)) + 1) if len(ids) else []


def rewritten(folder: Path, meta: dict, since: tuple[str, int] | None) -> tuple[np.ndarray, tuple[str, int] | None]:
    """Ids whose vectors the backfill rewrote since a reader last looked (``since``: the order
    file and watermark it saw), and the new mark. Before the switch nothing a reader searches
    is rewritten."""
    if not switched(meta):
        return np.zeros(0, np.int64), None
    state = active(meta)
    mark = (state["order"], int(state["done"]))
    if since is None or since[0] != mark[0] or since[1] >= mark[1]:
        return np.zeros(0, np.int64), mark  # a fresh index read every vector as it is now
    return read_order(folder, state)[since[1] : mark[1]], mark


def summary(folder: Path, meta: dict, live: np.ndarray) -> dict | None:
    """What ``glimpse info`` and ``/api/stats`` show: both encoders, the share re-embedded, the map's quality."""
    state = active(meta)
    if state is None:
        return None
    real = 0
    if switched(meta):  # live items not waiting in the order: re-embedded, or added since the switch
        real = len(live) - int(np.isin(read_order(folder, state)[int(state["done"]):], live).sum())
    return {
        "phase": state["phase"],
        "old": described(state["old"]),
        "new": described(state["new"]),
        "images": len(live),
        "reembedded": real,
        "share": real / len(live) if len(live) else 1.0,
        "sampled": min(int(state["done"]), int(state["sample"])),
        "sample": int(state["sample"]),
        "map": state.get("map_kind"),
        "quality": state.get("quality"),
        "policy": state["policy"],
        "unreadable": int(state.get("unreadable", 0)),
    }


def described(encoder: dict) -> str:
    chosen = "".join(f", {k} {v}" for k, v in (encoder.get("encoder_options") or {}).items())
    return f"{encoder['encoder']} v{encoder['encoder_version']} ({encoder['dim']}-d{chosen})"
