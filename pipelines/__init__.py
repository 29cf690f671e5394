"""Thin command-line pipelines over `cotracker3` and `sfm_tracks`."""
