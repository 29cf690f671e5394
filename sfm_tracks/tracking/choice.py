"""Which tracker runs: `auto` resolved against the weights at hand, and the provider factory.

This sits above the providers (`providers.py`: Lucas-Kanade and the base class; `cotracker.py`: CoTracker3),
so neither imports the other's factory: the dependency runs one way. CoTracker3 (and with it torch, ~2 s) is
imported only when it is chosen: deciding on Lucas-Kanade and running it never loads torch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .providers import LucasKanadeProvider, TrackProvider

TRACKERS = ("auto", "cotracker3", "cotracker3-online", "lk")


def tracker_mode(fast: Optional[bool], device: str) -> str:
    """The CLIs' `--fast/--no-fast`: unset means fast on CPU (within the accuracy bounds of BENCHMARKS.md), exact on GPU."""
    return "fast" if fast or (fast is None and str(device).startswith("cpu")) else "exact"


@dataclass
class TrackerChoice:
    """What `auto` (or an explicit name) resolves to: a concrete tracker, its weights and why."""

    name: str  # one of TRACKERS except "auto"
    checkpoint: Optional[str]  # weights path or "default" for CoTracker3, None for LK
    reason: str


def _beats_lk(scores: Optional[list]) -> bool:
    """True only when every stored evaluation says the weights track better than Lucas-Kanade."""
    if not scores:
        return False
    return all((s["ours"] > s["lk"]) if s["higher_is_better"] else (s["ours"] < s["lk"]) for s in scores)


def choose_tracker(name: str = "auto", checkpoint: Optional[str] = "default") -> TrackerChoice:
    """Resolve a tracker name. `auto`: explicit weights, else the official CoTracker3 weights (torch hub
    cache, or a download unless SFM_TRACKS_NO_DOWNLOAD=1), else the best tracker shipped: the packaged
    CoTracker3 weights only if their model-card scores (safetensors metadata `score_vs_lk`) beat
    Lucas-Kanade on every stored evaluation, otherwise Lucas-Kanade."""
    if name not in TRACKERS:
        raise ValueError(f"tracker must be one of {TRACKERS}, got {name!r}")
    if name != "auto":
        return TrackerChoice(name, None if name == "lk" else checkpoint, f"--tracker {name} requested")
    from cotracker3.checkpoint import EMBEDDED_DIR, EMBEDDED_FILES, OFFICIAL_FILES, hub_cache_dir, official_checkpoint, score_vs_lk

    if checkpoint not in (None, "default"):
        return TrackerChoice("cotracker3", checkpoint, f"auto: CoTracker3 with the weights given explicitly ({checkpoint})")
    official = official_checkpoint("offline")
    if official is not None:
        return TrackerChoice("cotracker3", "default", f"auto: {official[1]}")  # "default" now resolves to that file
    embedded = EMBEDDED_DIR / EMBEDDED_FILES["offline"]
    missing = f"no official CoTracker3 weights ({OFFICIAL_FILES['offline']} not in {hub_cache_dir()})"
    scores = score_vs_lk(embedded) if embedded.is_file() else None
    shown = "; ".join(f"{s['metric']}: {s['ours']:g} vs LK {s['lk']:g}" for s in scores or [])
    if _beats_lk(scores):
        return TrackerChoice("cotracker3", str(embedded), f"auto: {missing}; the shipped {embedded.name} beats Lucas-Kanade ({shown})")
    why = f"they score below Lucas-Kanade ({shown})" if scores else "they carry no score against Lucas-Kanade"
    return TrackerChoice("lk", None, f"auto: Lucas-Kanade: {missing}, and the shipped CoTracker3 weights are not used because "
                                     f"{why}; cotracker3/weights/MODEL_CARD.md")


def make_provider(name: str = "auto", checkpoint: Optional[str] = "default", device: str = "cpu", mode: str = "exact") -> TrackProvider:
    """A TrackProvider by CLI name (`auto`: see choose_tracker); `provider.choice` says what ran and why.

    mode: CoTracker3's "exact" or "fast" (cotracker3.fast); ignored by Lucas-Kanade.
    CoTracker3 raises cotracker3.CheckpointError when no weights are found."""
    choice = choose_tracker(name, checkpoint)
    if choice.name == "lk":
        provider = LucasKanadeProvider()
    else:
        from .cotracker import CoTrackerOnlineProvider, CoTrackerProvider

        cls = CoTrackerProvider if choice.name == "cotracker3" else CoTrackerOnlineProvider
        provider = cls(checkpoint=choice.checkpoint, device=device, mode=mode)
    provider.choice = choice
    return provider


def tracker_key(provider: TrackProvider) -> str:
    """The concrete tracker name ("auto" resolved) that keys the per-tracker filter settings."""
    choice = getattr(provider, "choice", None)
    return choice.name if choice is not None else {"lucas-kanade": "lk"}.get(provider.name, provider.name)


def tracker_reason(provider: TrackProvider) -> str:
    choice = getattr(provider, "choice", None)
    return choice.reason if choice is not None else "provider given by the caller"
