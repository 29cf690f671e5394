"""Learning-rate schedules that can be extended without a warm restart.

A schedule is a list of pieces ``[first_step, knots]``, each knots a list of ``[step, scale, shape]``: the
learning rate is ``peak * scale``, between two knots the scale follows the earlier knot's ``shape``
("cos": half-cosine, "lin": straight line), and the latest piece started rules. A fresh schedule is one
piece; each extension adds one, so the past stays exactly as it was. Two fresh shapes:

- ``onecycle``: torch's ``OneCycleLR`` as the official script uses it (cosine warm-up from peak/25 over
  ``pct_start`` of the steps, cosine decay to peak/25/1e4), reproduced exactly;
- ``wsd`` (warmup-stable-decay): linear warm-up over ``pct_start``, constant peak, then a cosine decay to
  ``floor`` over the last ``decay_frac`` of the steps.

``extend`` answers a resumed run with another ``--steps``: the schedule is kept up to ``step`` (a warm-up
in progress is finished), the learning rate then stays where it is and decays over the run's last
``decay_frac`` (one-cycle: over all the new steps), reaching the floor at ``total``. A WSD run extended in its stable
phase is the fresh WSD schedule of the new length (past its warm-up); a run already in its decay continues from its
current, lower rate. No schedule ever rises again after warm-up: an extended run never warm-restarts.
"""
from __future__ import annotations

import math

import torch

ONECYCLE_DIV, ONECYCLE_FINAL_DIV = 25.0, 1e4  # torch's OneCycleLR defaults (div_factor, final_div_factor)
KINDS = ("onecycle", "wsd")


def fresh_knots(train: dict, total: int) -> list[list]:
    """Knots of a fresh ``train["schedule"]`` schedule over ``total`` steps (the one-cycle schedule also
    counts the config's ``schedule_extra_steps``, as the official script does)."""
    kind = train.get("schedule", "onecycle")
    pct = train["pct_start"]
    if kind == "onecycle":
        n = total + max(1, train["schedule_extra_steps"])
        start = 1.0 / ONECYCLE_DIV
        peak_at = float(pct * n) - 1
        warmup = [[0, start, "cos"]] if peak_at > 0 else []  # no warm-up: the anneal starts at step -1, as torch's
        return warmup + [[peak_at, 1.0, "cos"], [n - 1, start / ONECYCLE_FINAL_DIV, "cos"]]
    if kind == "wsd":
        warm = max(0.0, pct * total)
        decay_at = max(warm, (1.0 - train["decay_frac"]) * total)
        knots = [[0, 0.0, "lin"]] if warm > 0 else []
        knots += [[warm, 1.0, "lin"], [decay_at, 1.0, "cos"], [total, train.get("floor", 0.0), "cos"]]
        return knots
    raise ValueError(f"unknown learning-rate schedule {kind!r}; choose from {', '.join(KINDS)}")


def scale_at(knots: list[list], step: float) -> float:
    """The scale (lr / peak) at ``step``; constant before the first and after the last knot."""
    if step <= knots[0][0]:
        return float(knots[0][1])
    for (s0, v0, shape), (s1, v1, _) in zip(knots, knots[1:]):
        if step <= s1:
            t = (step - s0) / (s1 - s0) if s1 > s0 else 1.0
            w = (1 - math.cos(math.pi * t)) / 2 if shape == "cos" else t
            return float(v0 + (v1 - v0) * w)
    return float(knots[-1][1])


def piece_at(pieces: list[list], step: float) -> list[list]:
    """The knots in force at ``step``: pieces are ``[first_step, knots]``, the latest started one rules."""
    return [k for start, k in pieces if start <= step][-1] if step >= pieces[0][0] else pieces[0][1]


def extend(pieces: list[list], step: int, total: int, decay_frac: float, floor: float) -> list[list]:
    """The schedule of a run resumed at ``step`` with a new length ``total``: unchanged up to ``step``
    (through the end of a warm-up in progress), then held at its current scale and decayed with a cosine
    from ``(1 - decay_frac) * total`` (or from here, if that has passed) to ``min(floor, current)`` at ``total``."""
    if step > total:
        raise ValueError(f"the checkpoint is at step {step}, past the new schedule's {total} steps")
    knots = piece_at(pieces, step)
    here = step
    ahead = [k for k in knots if k[0] > step]
    if ahead and ahead[0][1] > scale_at(knots, step) and ahead[0][0] <= total:  # finish the warm-up first
        here = ahead[0][0]
    value = scale_at(knots, here)
    decay_at = max(here, (1.0 - decay_frac) * total)
    new = [[here, value, "lin"], [decay_at, value, "cos"]] if decay_at > here else [[here, value, "cos"]]
    if total > here:
        new.append([total, min(floor, value), "cos"])
    return [p for p in pieces if p[0] < here] + [[here, new]]


def extension_decay(train: dict) -> float:
    """Share of an extension's new steps spent decaying: WSD's ``decay_frac``; a one-cycle run decays
    over all of them (a cosine from its current rate, as one-cycle's own anneal)."""
    return train["decay_frac"] if train.get("schedule", "onecycle") == "wsd" else 1.0


class KnotLR(torch.optim.lr_scheduler.LRScheduler):
    """``peak * scale_at(piece_at(pieces, step), step)`` for every parameter group; ``requested`` is the
    ``--steps`` the pieces were made for. Its state (pieces included) is plain lists and numbers, so
    checkpoints holding it load with ``weights_only=True``."""

    def __init__(self, optimizer: torch.optim.Optimizer, peak: float, pieces: list[list], requested: int,
                 step: int = 0):
        self.peak, self.pieces, self.requested = float(peak), pieces, int(requested)
        super().__init__(optimizer)
        if step:
            self.last_epoch = step
            for group, lr in zip(self.optimizer.param_groups, self.get_lr()):
                group["lr"] = lr
            self._last_lr = [g["lr"] for g in self.optimizer.param_groups]

    def get_lr(self) -> list[float]:
        scale = scale_at(piece_at(self.pieces, self.last_epoch), self.last_epoch)
        return [self.peak * scale for _ in self.optimizer.param_groups]


def build_schedule(optimizer: torch.optim.Optimizer, train: dict, total: int, step: int = 0) -> KnotLR:
    """The fresh schedule of a ``total``-step run, positioned at ``step``."""
    return KnotLR(optimizer, train["lr"], [[0, fresh_knots(train, total)]], total, step)


def resume_schedule(optimizer: torch.optim.Optimizer, train: dict, saved: dict, step: int, total: int) -> KnotLR:
    """The scheduler of a run resumed at ``step`` for ``total`` steps, from a checkpoint's scheduler state.

    Same length: the saved schedule (bit-identical to an uninterrupted run). Another length: ``extend``.
    A checkpoint of the earlier ``OneCycleLR`` trainer (no knots) is read as its one-cycle schedule."""
    if "pieces" in saved:
        pieces, requested = saved["pieces"], saved["requested"]
    else:  # torch OneCycleLR state: its total_steps counts the extra steps
        requested = int(saved["total_steps"]) - max(1, train["schedule_extra_steps"])
        pieces = [[0, fresh_knots(dict(train, schedule="onecycle"), requested)]]
    if requested != total:
        pieces = extend(pieces, step, total, extension_decay(train), train.get("floor", 0.0))
    return KnotLR(optimizer, train["lr"], pieces, total, step)
