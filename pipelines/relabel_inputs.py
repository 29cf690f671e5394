"""relabel.py's inputs: video files, folders and .txt lists named on the command line, and their shards.

Paths named on the command line must exist (a typo ends the run before it starts, with one clear
line); a missing or broken video inside a folder or list is left to the run, which records it as
failed and goes on. Shards partition the sorted inputs round-robin, so every shard agrees.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

from pipelines.cli import UsageError

VIDEO_EXTENSIONS = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}


def check_named_file(path: Path) -> None:
    """A file named on the command line must exist, be readable and not be empty (UsageError)."""
    if not path.exists():
        raise UsageError(f"no such file or folder: {path}")
    try:
        with open(path, "rb") as f:
            empty = not f.read(1)
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror or e}") from None
    if empty:
        raise UsageError(f"empty file (0 bytes): {path}")


def read_list(path: Path) -> list[str]:
    """Entries of a .txt list (blank lines and # comments dropped), relative to the list's folder."""
    check_named_file(path)
    try:
        lines = [ln.strip() for ln in path.read_text().splitlines()]
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read list file {path}: {e}") from None
    return [str(path.parent / ln) for ln in lines if ln and not ln.startswith("#")]


def collect_inputs(inputs: Sequence[str]) -> list[Path]:
    """Sorted, de-duplicated absolute video paths from files, folders and .txt lists.

    Paths named on the command line must exist (UsageError); a missing or broken video
    listed in a .txt is left to the run, which records it as failed. Raises UsageError when nothing
    is found or two videos share a stem (they would share OUTDIR/<stem>.npz)."""
    paths = sorted(_gather(inputs, True, ()), key=str)
    if not paths:
        raise UsageError(f"no videos ({', '.join(sorted(VIDEO_EXTENSIONS))}) found in {', '.join(map(str, inputs))}")
    stems: dict = {}
    for p in paths:
        stems.setdefault(p.stem, []).append(str(p))
    clash = [v for v in stems.values() if len(v) > 1]
    if clash:
        raise UsageError(f"videos with the same file stem would write the same OUTDIR/<stem>.npz: {' and '.join(clash[0])}"
                         + (f" (and {len(clash) - 1} more such groups)" if len(clash) > 1 else ""))
    return paths


def _gather(inputs: Sequence[str], named: bool, open_lists: tuple) -> set:
    """Absolute video paths; `open_lists` are the .txt lists being read (a list may not include itself)."""
    out = set()
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out.update(q.resolve() for q in p.iterdir() if q.is_file() and q.suffix.lower() in VIDEO_EXTENSIONS)
        elif p.suffix.lower() == ".txt":
            if p.resolve() in open_lists:
                raise UsageError(f"list file {p} includes itself (via {' -> '.join(map(str, open_lists))})")
            out |= _gather(read_list(p), False, open_lists + (p.resolve(),))
        else:
            if named:
                check_named_file(p)
            out.add(p.resolve())
    return out


def parse_shard(shard: Optional[str]) -> tuple[int, int]:
    """(index, count) from "I/N", else from torchrun's RANK / WORLD_SIZE, else (0, 1); UsageError if malformed."""
    source = f"--shard {shard!r}" if shard else "RANK/WORLD_SIZE"
    try:
        if shard:
            i, n = (int(x) for x in shard.split("/"))
        else:
            i, n = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    except ValueError:
        raise UsageError(f"{source}: expected I/N, two integers with 0 <= I < N" if shard else
                         f"RANK={os.environ.get('RANK')!r} / WORLD_SIZE={os.environ.get('WORLD_SIZE')!r}: "
                         "expected integers with 0 <= RANK < WORLD_SIZE") from None
    if not 0 <= i < n:
        raise UsageError(f"{source}: shard {i}/{n} does not exist, need 0 <= I < N")
    return i, n


def shard_inputs(paths: Sequence[Path], index: int, count: int) -> list[Path]:
    """Round-robin over the sorted paths: the shards partition the inputs."""
    return sorted(paths, key=str)[index::count]
