"""sfm-tracks: point tracks for Structure-from-Motion (track providers, filters, pycolmap bridge).

VGGSfMTrackerAdapter speaks torch (~2 s to import), so it loads on first use (PEP 562): importing the package,
or running the pipeline with Lucas-Kanade, never imports torch.
"""
from .colmap.cameras import CameraSpec
from .colmap.export import export, write_model, write_ply, write_transforms
from .colmap.geometric_filter import FilterOptions, geometric_filter, reprojection_errors
from .colmap.mapping import MappingOptions, reconstruct
from .errors import ReconstructionError
from .tracking.filters import apply_filters, cycle_consistency, cycle_consistent_mask, low_confidence, stuck_at_border, too_short
from .tracking.providers import LucasKanadeProvider, TrackProvider
from .tracking.queries import reseed_queries, select_queries
from .tracking.windowed import windowed
from .tracks import Tracks
from .video import VideoError, draw_tracks, iter_frames, read_frames, write_video

__all__ = [
    "Tracks", "CameraSpec", "MappingOptions", "FilterOptions", "ReconstructionError", "reconstruct",
    "reprojection_errors", "geometric_filter", "export", "write_model", "write_ply", "write_transforms",
    "TrackProvider", "LucasKanadeProvider", "windowed", "select_queries", "reseed_queries",
    "cycle_consistency", "cycle_consistent_mask", "low_confidence", "stuck_at_border", "too_short", "apply_filters",
    "VGGSfMTrackerAdapter", "VideoError", "read_frames", "iter_frames", "write_video", "draw_tracks",
]


def __getattr__(name: str):
    if name != "VGGSfMTrackerAdapter":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from .tracking.vggsfm import VGGSfMTrackerAdapter

    globals()[name] = VGGSfMTrackerAdapter  # later look-ups skip this function
    return VGGSfMTrackerAdapter


def __dir__():
    return sorted(set(globals()) | {"VGGSfMTrackerAdapter"})
