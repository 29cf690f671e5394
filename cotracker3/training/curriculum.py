"""Training phases: which clips (length, size, tracks) and batch size a step trains on.

A config without ``curriculum`` is one phase: ``conf["data"]`` at the model resolution. With
``curriculum`` (a list), phase k covers steps [until of phase k-1, its ``until``) and the last one
has no end, so a run extended with ``--steps`` keeps training on the longest clips. Each phase
entry may override ``data`` keys (``seq_len``, ``num_tracks``, ...), ``size`` (H, W) at which clips
are rendered and fed to the model, and ``batch_size``. The model's ``model_resolution`` stays fixed
(it is what the predictor resizes videos to at inference): train the last phase at it.

Which phase, dataset and sampler position a step uses is a pure function of the step, so a
resumed curriculum run repeats exactly what an uninterrupted one would have done.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .configs import merge


@dataclass(frozen=True)
class Phase:
    index: int
    start: int  # first step (0-based count of steps done when the phase begins)
    end: Optional[int]  # None: open-ended (the last phase)
    data: dict  # dataset config (name and kwargs, without crop_size)
    size: tuple  # (H, W) of the clips the model trains on
    batch_size: int

    def position(self, step: int) -> int:
        """Sampler position (clips drawn in this phase) before ``step``."""
        return (step - self.start) * self.batch_size


def phases(conf: dict) -> list[Phase]:
    """The run's phases; validates the curriculum (increasing ``until``, last phase open-ended)."""
    size = tuple(conf["model"]["args"].get("model_resolution", (384, 512)))
    bs = conf["train"]["batch_size"]
    entries = conf.get("curriculum") or [{}]
    out, start = [], 0
    for k, entry in enumerate(entries):
        until = entry.get("until")
        last = k == len(entries) - 1
        if (until is None) != last or (until is not None and until <= start):
            raise ValueError(f"curriculum phase {k}: 'until' must increase and only the last phase is open-ended")
        out.append(Phase(k, start, until, merge(conf["data"], entry.get("data", {})),
                         tuple(entry.get("size", size)), int(entry.get("batch_size", bs))))
        start = until
    return out


def phase_at(all_phases: list[Phase], step: int) -> Phase:
    """The phase that step ``step`` (0-based) trains in."""
    for p in all_phases:
        if p.end is None or step < p.end:
            return p
    raise AssertionError("the last phase is open-ended")


def skip_phases(conf: dict, n: int) -> dict:
    """``conf`` without its first ``n`` curriculum phases, the later ends moved earlier by as many steps.

    For a warm start whose weights already learnt those phases (the shipped ``small`` weights are
    800 steps of 8-frame 128 px clips: the curriculum's first phase)."""
    entries = conf.get("curriculum") or [{}]
    if not 0 <= n < len(entries):
        raise ValueError(f"cannot skip {n} of the {len(entries)} curriculum phases (at least one must stay)")
    if n == 0:
        return conf
    shift = entries[n - 1]["until"]
    kept = [dict(e, until=e["until"] - shift) if "until" in e else dict(e) for e in entries[n:]]
    return merge(conf, {}) | {"curriculum": kept}
