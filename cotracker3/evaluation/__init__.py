"""Evaluation: TAP-Vid metrics and readers, BADJA keypoint PCK, a tracker-agnostic runner."""
