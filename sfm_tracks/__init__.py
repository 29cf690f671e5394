"""sfm-tracks: point tracks for Structure-from-Motion (track providers, filters, pycolmap bridge)."""
from .cameras import CameraSpec
from .errors import ReconstructionError
from .export import colorize, export, write_model, write_ply, write_transforms
from .geometric_filter import FilterOptions, geometric_filter, reprojection_errors
from .mapping import MappingOptions, reconstruct
from .tracks import Tracks

__all__ = ["Tracks", "CameraSpec", "MappingOptions", "FilterOptions", "ReconstructionError", "reconstruct",
           "reprojection_errors", "geometric_filter", "export", "colorize", "write_model", "write_ply", "write_transforms"]
