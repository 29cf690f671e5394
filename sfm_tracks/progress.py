"""Progress bars for the long steps, which a caller can silence (reconstruct.py -q: only warnings and the summary)."""
from __future__ import annotations

from tqdm import tqdm

_shown = True


def show_progress(on: bool) -> None:
    """Show (True, the default) or hide every progress bar sfm_tracks draws from now on."""
    global _shown
    _shown = bool(on)


def progress(iterable=None, **kwargs) -> tqdm:
    """tqdm(iterable, **kwargs), hidden after show_progress(False)."""
    return tqdm(iterable, disable=not _shown, **kwargs)
