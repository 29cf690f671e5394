"""The bridge into pycolmap: cameras, the database (tracks plus SIFT matches), mapping, the pure-rotation
check, reprojection verdicts, exports and pose metrics."""
