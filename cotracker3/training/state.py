"""Run-directory state: atomic files, RNG states as tensors, and a training checkpoint that never unpickles code.

A training checkpoint holds only tensors and plain containers (dict, list, tuple, str, int, float,
bool, None), so it loads with ``torch.load(weights_only=True)``: a planted file with a pickled
object (a ``__reduce__`` payload) is refused before anything in it runs. RNG states are converted
to that form here (numpy's Mersenne-Twister keys to an int64 tensor, Python's to a list of ints).
"""
from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import torch

from cotracker3.checkpoint import CheckpointError

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_KEYS = ("model", "optimizer", "scheduler", "step", "rng", "data", "config", "model_config", "kind")


class RunError(ValueError):
    """A run folder or run request that cannot be honoured (not a folder, already used, steps in the past)."""


# -- files -------------------------------------------------------------------------------------

def atomic_save(obj, path: Path) -> None:
    """torch.save to a temporary file, fsync, then rename: a crash never leaves a partial file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def truncate_jsonl(path: Path, last_step: int) -> None:
    """Keep the records with step <= last_step (and drop a torn last line) before appending."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if rec.get("step", -1) <= last_step:
            keep.append(line)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(k + "\n" for k in keep))
    os.replace(tmp, path)


def append_jsonl(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


# -- random number generators -----------------------------------------------------------------

def rng_state() -> dict:
    """torch, numpy, python (and CUDA) generator states as tensors and lists (weights_only-safe)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state = {"torch": torch.get_rng_state(),
             "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
             "python": {"version": version, "internal": list(internal), "gauss": gauss}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# -- checkpoint --------------------------------------------------------------------------------

def load_training_checkpoint(path: Path) -> dict:
    """The checkpoint dict, loaded with ``weights_only=True``; CheckpointError (one line) if it is
    missing, unreadable, holds pickled objects, or lacks a training checkpoint's keys."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no training checkpoint to resume: {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle payloads, truncation, not a torch file at all
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        if "weights_only" in str(e) or "Unsupported global" in str(e):
            first = "it holds pickled Python objects, not only tensors and plain containers (refused unread)"
        raise CheckpointError(f"cannot load training checkpoint {path}: {first}") from None
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise CheckpointError(f"{path} is not a training checkpoint (missing {', '.join(missing)})")
    return ckpt
