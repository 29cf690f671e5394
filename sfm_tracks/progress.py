"""Progress bars for the long steps, which a caller can silence (reconstruct.py -q: only warnings and the summary)."""
from __future__ import annotations

from tqdm import tqdm

_shown = True


def show_progress(on: bool) -> bool:
    """Show (True, the default) or hide every progress bar sfm_tracks draws from now on -> the previous setting,
    for a caller that switches them off for one job only (reconstruct.py's main)."""
    global _shown
    was, _shown = _shown, bool(on)
    return was


def progress(iterable=None, **kwargs) -> tqdm:
    """tqdm(iterable, **kwargs), hidden after show_progress(False)."""
    return tqdm(iterable, disable=not _shown, **kwargs)
