"""Tracking: anything that turns frames and queries into `Tracks` (Lucas-Kanade, CoTracker3, the VGGSfM
drop-in), query selection, windowing of long videos, and the track filters."""
