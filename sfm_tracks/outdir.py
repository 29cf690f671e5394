"""The output folder: where a run may write, what it may replace, and where it stages its work.

A run never deletes what it did not create:
- OUTDIR must not be an input, contain an input, or (for folder inputs) lie inside one.
- An existing non-empty OUTDIR is replaced only with `overwrite=True`, and only when it is a previous
  result of ours: a report.json with our keys and no entries besides our output names.
- Staging: outputs are written into `.OUT.work-<pid>-<random>` beside OUTDIR (same filesystem, so the
  finished result is renamed into place in one step). The folder carries a marker file naming its
  process and host; a killed run leaves it behind and the next run for the same OUTDIR removes every
  such folder whose process is gone. Decoded frames and masks never lie there as files a kill could
  leave: they are memory-mapped anonymous files (unlinked at creation, see `anonymous_memmap`), freed by
  the OS however the run ends, and placed beside OUTDIR because /tmp is often small or RAM-backed.
- Parent folders created for OUTDIR are removed again (if still empty) when the run fails.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np

from .video import VideoError

OUTPUT_NAMES = {"images", "sparse", "points.ply", "tracks.npz", "transforms.json", "report.json", "tracks.mp4", "masks", "undistorted"}
REPORT_KEYS = {"frames_total", "frames_registered", "points3d", "tracker", "config"}
MARKER = ".sfm_tracks_work"


class InputError(VideoError):
    """Bad user input other than the frames themselves (masks, intrinsics, output folder)."""


def _inside(a: Path, b: Path) -> bool:
    """a == b or a lies below b (both resolved)."""
    return a == b or b in a.parents


def check_overlap(out_dir: Path, inputs: dict) -> None:
    """Refuse an OUTDIR that is, contains, or lies inside an input. inputs: {what: path or None}."""
    out = Path(out_dir).resolve()
    for what, path in inputs.items():
        if path is None:
            continue
        src = Path(path).resolve()
        if _inside(src, out):
            where = "is" if src == out else "contains"
            raise InputError(f"output folder {out_dir} {where} the {what} {path}; choose another -o")
        if src.is_dir() and _inside(out, src):
            raise InputError(f"output folder {out_dir} lies inside the {what} {path}; choose another -o")


def is_previous_result(out_dir: Path) -> bool:
    """True when out_dir holds only our outputs and a report.json with our keys."""
    try:
        names = {p.name for p in out_dir.iterdir()}
        report = json.loads((out_dir / "report.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(report, dict) and REPORT_KEYS <= set(report) and names <= OUTPUT_NAMES


def check_replaceable(out_dir: Path, overwrite: bool) -> None:
    """OUTDIR may be missing, an empty folder, or (with overwrite) a previous result of ours."""
    if not out_dir.exists() and not out_dir.is_symlink():
        return
    if not out_dir.is_dir():
        raise InputError(f"output path {out_dir} exists and is not a folder")
    if not any(out_dir.iterdir()):
        return
    if not overwrite:
        raise InputError(f"output folder {out_dir} exists and is not empty (pass --overwrite to replace a previous result)")
    if not is_previous_result(out_dir):
        raise InputError(f"output folder {out_dir} is not empty and not a previous sfm-tracks result (no report.json of ours, "
                         "or files that are not ours); --overwrite replaces only our own results: choose another -o")


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, owned by someone else
        return False
    return False


def remove_stale(out_dir: Path) -> list:
    """Remove `.OUT.work-*` folders beside out_dir left by killed runs on this host; returns them.

    Also settles a `.OUT.old-<pid>` left by a swap killed halfway (see export.replace_dir).
    """
    removed = []
    for p in out_dir.parent.glob(f".{out_dir.name}.work-*"):
        try:
            owner = json.loads((p / MARKER).read_text())
            stale = owner["host"] == socket.gethostname() and owner["pid"] != os.getpid() and _process_gone(int(owner["pid"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not ours (no readable marker): leave it alone
        if stale:
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    for p in out_dir.parent.glob(f".{out_dir.name}.old-*"):  # export.replace_dir killed mid-swap
        pid = p.name.rsplit("-", 1)[-1]
        if not (pid.isdigit() and int(pid) != os.getpid() and _process_gone(int(pid)) and is_previous_result(p)):
            continue
        if out_dir.exists():
            shutil.rmtree(p, ignore_errors=True)  # the swap finished: this is the replaced result
            removed.append(p)
        else:
            p.rename(out_dir)  # killed between the two renames: put the previous result back
    return removed


def missing_folders(folder: Path) -> list[Path]:
    """The folders `mkdir -p folder` would create, outermost last; InputError when `folder` or an ancestor
    is a file."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"output {folder} exists and is not a folder")
    missing, p = [], folder.absolute()
    while not p.exists():
        missing.append(p)
        p = p.parent
    if not p.is_dir():
        raise InputError(f"cannot create output folder {folder}: {p} is not a folder")
    return missing


def make_folders(folder: Path) -> list[Path]:
    """mkdir -p folder; returns the folders it created, deepest last (for `remove_empty` on failure)."""
    created = []
    for f in reversed(missing_folders(folder)):
        f.mkdir()
        created.append(f)
    return created


def remove_empty(folders) -> None:
    """Remove the given folders, deepest first, while they are empty (a run's own, unused ones)."""
    for d in sorted(folders, key=lambda q: len(Path(q).parts), reverse=True):
        try:
            Path(d).rmdir()
        except OSError:
            return


@contextlib.contextmanager
def staging(out_dir: Path) -> Iterator[Path]:
    """A marked work folder beside out_dir; removed on exit, with the parents made for out_dir on failure."""
    out_dir = Path(out_dir)
    created, work = [], None
    try:
        try:
            created = make_folders(out_dir.parent)
            remove_stale(out_dir)
            work = out_dir.parent / f".{out_dir.name}.work-{os.getpid()}-{secrets.token_hex(4)}"
            work.mkdir()
            (work / MARKER).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
        except OSError as e:
            raise InputError(f"cannot write to output location {out_dir.parent}: {e.strerror or e}") from e
        yield work
    except BaseException:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
        remove_empty(created)
        raise
    shutil.rmtree(work, ignore_errors=True)


def anonymous_memmap(folder: Path, dtype, shape: tuple) -> np.memmap:
    """A zeroed read-write memmap of `shape` backed by an unlinked temp file in `folder` (nothing to clean up)."""
    with tempfile.TemporaryFile(dir=folder) as f:  # the mapping keeps its own descriptor
        f.truncate(max(int(np.prod(shape)) * np.dtype(dtype).itemsize, 1))
        return np.memmap(f, dtype=dtype, mode="r+", shape=tuple(shape))
