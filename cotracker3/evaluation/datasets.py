"""TAP-Vid pickle readers producing evaluation samples with tapnet's query sampling.

Pickles can run code when read, and TAP-Vid is released only as pickles: this is the one reader in
the project that unpickles, and it does so only for a file its caller vouches for
(``allow_pickle=True``; ``pipelines/evaluate.py`` passes it only for a file named with ``--data``).
Even then, a restricted unpickler admits nothing but containers, bytes and numpy arrays. The same
layout stored as ``.npz`` (``save_tapvid_npz``; keys ``<name>/video|points|occluded``) needs no pickle.

Pickle layouts (as released by DeepMind):
- DAVIS (``tapvid_davis.pkl``): dict video_name -> entry
- Kinetics (``*_of_0010.pkl`` shards): list of entries (a dict is taken by its values)
- RGB-Stacking (``tapvid_rgb_stacking.pkl``): list of entries
Each entry: ``video`` (T, H, W, 3) uint8 or a list of T JPEG byte strings; ``points`` (N, T, 2)
float (x, y) normalised to [0, 1]; ``occluded`` (N, T) bool.

Query sampling (tapnet ``sample_queries_first`` / ``sample_queries_strided``):
- ``first``: tracks never visible are dropped; each remaining track is queried at its first
  visible frame.
- ``strided``: for t = 0, 5, 10, ..., every track visible at t yields a query at t (a track can be
  queried several times; its GT is then repeated). Queries are ordered by query frame.

Pixel convention: ``points * (W, H)`` at the output resolution (tapnet, the TAP-Vid paper
protocol). CoTracker's loader (``tap_vid_datasets.py``, CoTracker3 era) instead uses
``points * (W - 1, H - 1)``; pass ``point_scale="cotracker"`` to reproduce it. At 256x256 the two
differ by up to 1 px at the far border.
"""
from __future__ import annotations

import glob
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np

QUERY_STRIDE = 5
ENTRY_KEYS = ("video", "points", "occluded")

# The only globals a TAP-Vid pickle needs (numpy arrays, dtypes and scalars under numpy 1.x and 2.x
# module names; `_codecs.encode` rebuilds bytes in protocol <= 2 pickles).
PICKLE_GLOBALS = {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"), ("collections", "OrderedDict")} | {
    (f"numpy.{core}.{mod}", name) for core in ("core", "_core")
    for mod, name in (("multiarray", "_reconstruct"), ("multiarray", "scalar"), ("numeric", "_frombuffer"))}


class EvalDataError(ValueError):
    """An evaluation data file (TAP-Vid, BADJA) that cannot be read: missing, refused (pickle not
    allowed), corrupt or of the wrong layout. The message names the file and the problem."""


class _ArraysOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a TAP-Vid pickle holds only "
                                         "dicts, lists, bytes and numpy arrays")
        return super().find_class(module, name)


def read_tapvid_pickle(path: str | Path, allow_pickle: bool = False):
    """The object in a TAP-Vid pickle, via an unpickler that admits only containers, bytes and numpy
    arrays. ``allow_pickle`` must be True: the caller vouches that the user named this file."""
    if not allow_pickle:
        raise EvalDataError(f"{path} is a pickle, which can run code when read: it is read only when "
                                "named explicitly (allow_pickle=True; evaluate.py --data FILE)")
    try:
        with open(path, "rb") as fh:
            return _ArraysOnlyUnpickler(fh).load()
    except FileNotFoundError:
        raise EvalDataError(f"no such file: {path}") from None
    except Exception as e:  # truncated, not a pickle, hostile globals, ...
        raise EvalDataError(f"cannot read TAP-Vid pickle {path}: {type(e).__name__}: {e}") from None


def save_tapvid_npz(data: dict, path: str | Path) -> None:
    """Store {name: entry} (video (T, H, W, 3) uint8 array, points, occluded) as .npz, atomically."""
    path = Path(path)
    arrays = {f"{name}/{k}": np.asarray(entry[k]) for name, entry in data.items() for k in ENTRY_KEYS}
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}.npz")
    try:
        np.savez(tmp, **arrays)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_tapvid_npz(path: str | Path) -> dict:
    """{name: entry} from a ``save_tapvid_npz`` file (no pickle involved)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            data: dict = {}
            for key in z.files:
                name, _, field = key.rpartition("/")
                if field not in ENTRY_KEYS:
                    raise ValueError(f"unexpected array {key!r}")
                data.setdefault(name, {})[field] = z[key]
    except FileNotFoundError:
        raise EvalDataError(f"no such file: {path}") from None
    except Exception as e:
        raise EvalDataError(f"cannot read TAP-Vid .npz {path}: {type(e).__name__}: {e}") from None
    return data


@dataclass
class TapVidSample:
    """One evaluation video. ``T`` frames, ``N`` queries, all coordinates in ``video`` pixels.

    video: (T, H, W, 3) uint8 RGB.
    query_points: (N, 3) float32 (t, y, x) -- tapnet's order, for the metrics.
    gt_tracks: (T, N, 2) float32 (x, y).
    gt_visible: (T, N) bool.
    query_mode: "first" or "strided" (decides which frames the metrics score).
    """

    name: str
    video: np.ndarray
    query_points: np.ndarray
    gt_tracks: np.ndarray
    gt_visible: np.ndarray
    query_mode: str

    @property
    def queries_txy(self) -> np.ndarray:
        """(N, 3) float32 (t, x, y): the order CoTracker models and ``predict_fn`` take."""
        return self.query_points[:, [0, 2, 1]].astype(np.float32)


def decode_frames(frames) -> np.ndarray:
    """(T, H, W, 3) uint8 array, or a sequence of JPEG/PNG bytes -> (T, H, W, 3) uint8 RGB."""
    if isinstance(frames, np.ndarray) and frames.dtype == np.uint8:
        return frames
    if len(frames) and isinstance(frames[0], (bytes, bytearray)):
        out = []
        for buf in frames:
            bgr = cv2.imdecode(np.frombuffer(buf, np.uint8), cv2.IMREAD_COLOR)
            if bgr is None:
                raise ValueError("could not decode a video frame")
            out.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        return np.stack(out)
    video = np.asarray(frames)
    # only integers already in 0..255 convert exactly; a float video (often 0..1) is refused, not rounded
    if video.dtype.kind not in "ui" or (video.size and (video.min() < 0 or video.max() > 255)):
        raise ValueError(f"video must be uint8 RGB (0..255), got {video.dtype} values")
    return video.astype(np.uint8)


def resize_video(video: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Resize every frame. Area filter when shrinking (anti-aliased, like mediapy's PIL Lanczos
    used by tapnet up to small pixel differences), bicubic when enlarging."""
    H, W = video.shape[1:3]
    if (H, W) == tuple(size_hw):
        return video
    interp = cv2.INTER_AREA if size_hw[0] * size_hw[1] < H * W else cv2.INTER_CUBIC
    return np.stack([cv2.resize(f, (size_hw[1], size_hw[0]), interpolation=interp) for f in video])


def sample_queries_first(occluded: np.ndarray, points: np.ndarray):
    """(N, T) bool, (N, T, 2) px -> query_points (n, 3) (t, y, x), points (n, T, 2), occluded (n, T)."""
    keep = (~occluded).any(axis=1)
    occluded, points = occluded[keep], points[keep]
    t = np.argmax(~occluded, axis=1)  # first visible frame
    xy = points[np.arange(len(t)), t]
    query = np.stack([t, xy[:, 1], xy[:, 0]], axis=-1)
    return query.astype(np.float32), points, occluded


def sample_queries_strided(occluded: np.ndarray, points: np.ndarray, stride: int = QUERY_STRIDE):
    """Like :func:`sample_queries_first` but one query per (visible track, frame t % stride == 0)."""
    queries, pts, occs = [], [], []
    for t in range(0, occluded.shape[1], stride):
        m = ~occluded[:, t]
        q = np.stack([np.full(m.sum(), t), points[m, t, 1], points[m, t, 0]], axis=-1)
        queries.append(q)
        pts.append(points[m])
        occs.append(occluded[m])
    return (np.concatenate(queries).astype(np.float32), np.concatenate(pts), np.concatenate(occs))


def load_tapvid_entries(path: str, allow_pickle: bool = False) -> list[tuple[str, dict]]:
    """(name, entry) pairs from a ``.npz`` (``save_tapvid_npz``), a pickle file, or every ``*.pkl``
    shard in a directory (Kinetics). Pickles need ``allow_pickle=True`` (see the module docstring).
    Dict keys (DAVIS video names) are kept; list items are named ``{file stem}_{index}``.
    Raises EvalDataError naming the file and the problem."""
    path = str(path)
    if not os.path.exists(path):
        raise EvalDataError(f"no such file or folder: {path}")
    if path.endswith(".npz"):
        return list(read_tapvid_npz(path).items())
    files = sorted(glob.glob(os.path.join(path, "*.pkl"))) if os.path.isdir(path) else [path]
    if not files:
        raise EvalDataError(f"no .pkl files in {path}")
    entries = []
    for f in files:
        data = read_tapvid_pickle(f, allow_pickle)
        stem = os.path.splitext(os.path.basename(f))[0]
        prefix = f"{stem}/" if len(files) > 1 else ""
        if isinstance(data, dict):  # DAVIS (or a dict-valued Kinetics shard): keep the keys
            items = [(f"{prefix}{k}", v) for k, v in data.items()]
        elif isinstance(data, (list, tuple)):  # Kinetics / RGB-Stacking lists
            items = [(f"{stem}_{i}", v) for i, v in enumerate(data)]
        else:
            raise EvalDataError(f"{f} holds a {type(data).__name__}, not a dict or list of TAP-Vid entries")
        for name, entry in items:
            missing = [k for k in ENTRY_KEYS if not isinstance(entry, dict) or k not in entry]
            if missing:
                raise EvalDataError(f"{f}: entry {name!r} lacks {', '.join(missing)}")
        entries += items
    return entries


def check_entry(name: str, video: np.ndarray, points: np.ndarray, occluded: np.ndarray) -> None:
    """EvalDataError unless video (T, H, W, 3), points (N, T, 2) finite and occluded (N, T) agree."""
    T = len(video)
    if video.ndim != 4 or video.shape[-1] != 3 or T < 1:
        raise EvalDataError(f"{name}: video has shape {video.shape}, expected (T, H, W, 3)")
    if points.ndim != 3 or points.shape[1:] != (T, 2) or occluded.shape != points.shape[:2]:
        raise EvalDataError(f"{name}: points {points.shape} / occluded {occluded.shape} do not fit "
                                f"a {T}-frame video (expected (N, {T}, 2) / (N, {T}))")
    if not np.isfinite(points[~occluded]).all():
        raise EvalDataError(f"{name}: visible points must be finite")


def make_sample(name: str, entry: dict, query_mode: str = "first",
                resize_to: tuple[int, int] | None = (256, 256), point_scale: str = "tapnet") -> TapVidSample:
    """Turn one pickle entry into a :class:`TapVidSample` (entry is not modified)."""
    try:
        video = decode_frames(entry["video"])
    except ValueError as e:
        raise EvalDataError(f"{name}: {e}") from None
    check_entry(name, video, np.asarray(entry["points"]), np.asarray(entry["occluded"], bool))
    if resize_to is not None:
        video = resize_video(video, resize_to)
    H, W = video.shape[1:3]
    if point_scale == "tapnet":
        scale = np.array([W, H], np.float64)
    elif point_scale == "cotracker":
        scale = np.array([W - 1, H - 1], np.float64)
    else:
        raise ValueError(f"unknown point_scale {point_scale!r}")
    points = np.asarray(entry["points"], np.float64) * scale  # (N, T, 2)
    occluded = np.asarray(entry["occluded"], bool)  # (N, T)
    if query_mode == "first":
        q, points, occluded = sample_queries_first(occluded, points)
    elif query_mode == "strided":
        q, points, occluded = sample_queries_strided(occluded, points)
    else:
        raise ValueError(f"unknown query mode {query_mode!r}")
    if len(q) == 0:
        raise EvalDataError(f"{name}: no point is visible on a query frame ({query_mode} mode), nothing to track")
    return TapVidSample(name, video, q, points.transpose(1, 0, 2).astype(np.float32),
                        ~occluded.T, query_mode)


def tapvid_samples(path: str, query_mode: str = "first", resize_to: tuple[int, int] | None = (256, 256),
                   point_scale: str = "tapnet", names: Sequence[str] | None = None,
                   allow_pickle: bool = False) -> Iterator[TapVidSample]:
    """Iterate the samples of a TAP-Vid .npz, pickle (``allow_pickle=True`` only for a file the user
    named) or Kinetics shard directory, decoded lazily."""
    for name, entry in load_tapvid_entries(path, allow_pickle):
        if names is None or name in names:
            yield make_sample(name, entry, query_mode, resize_to, point_scale)
