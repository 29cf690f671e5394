"""sfm-tracks: point tracks for Structure-from-Motion (track providers, filters, pycolmap bridge)."""
from .cameras import CameraSpec
from .errors import ReconstructionError
from .export import export, write_model, write_ply, write_transforms
from .filters import apply_filters, cycle_consistency, cycle_consistent_mask, low_confidence, stuck_at_border, too_short
from .geometric_filter import FilterOptions, geometric_filter, reprojection_errors
from .mapping import MappingOptions, reconstruct
from .providers import LucasKanadeProvider, TrackProvider
from .queries import reseed_queries, select_queries
from .tracks import Tracks
from .vggsfm import VGGSfMTrackerAdapter
from .video import VideoError, draw_tracks, iter_frames, read_frames, write_video
from .windowed import windowed

__all__ = [
    "Tracks", "CameraSpec", "MappingOptions", "FilterOptions", "ReconstructionError", "reconstruct",
    "reprojection_errors", "geometric_filter", "export", "write_model", "write_ply", "write_transforms",
    "TrackProvider", "LucasKanadeProvider", "windowed", "select_queries", "reseed_queries",
    "cycle_consistency", "cycle_consistent_mask", "low_confidence", "stuck_at_border", "too_short", "apply_filters",
    "VGGSfMTrackerAdapter", "VideoError", "read_frames", "iter_frames", "write_video", "draw_tracks",
]
