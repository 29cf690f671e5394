"""The one error type the SfM bridge raises for bad or degenerate input."""


class ReconstructionError(ValueError):
    """Tracks cannot be turned into a reconstruction (empty, too few frames, no parallax, ...).

    Raised before pycolmap sees the data, so callers get a readable reason instead of a C++ abort.
    """
