"""Pseudo-label real videos: ``python -m pipelines.relabel INPUT... -o OUTDIR [--teachers lk,cotracker3] ...``.

INPUT: video files, folders of videos, or .txt files listing them (one per line, relative to the
.txt). Writes OUTDIR/<video stem>.npz per video and appends one line per video to
OUTDIR/manifest.jsonl *after* its .npz is on disk (temp file, fsync, rename), so a killed run
restarted with the same command neither loses nor duplicates anything: videos already in the
manifest (done, skipped or failed) are not redone; a half-written .npz is simply rewritten.

Scale-out: ``--shard I/N`` (or torchrun's RANK / WORLD_SIZE) takes every N-th of the sorted inputs.
Coordinates are stored in the tracked frame size (``frame_size``; ``scale`` = tracked / original).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from tqdm import tqdm

from sfm_tracks.providers import TRACKERS as TEACHER_NAMES, add_fast_flag, make_provider as make_teacher, tracker_mode
from sfm_tracks.pseudo_labels import DEFAULT_CONF, TooFewQueries, label_stats, label_video
from sfm_tracks.video import VideoError, iter_frames, resize_max_side

log = logging.getLogger("relabel")
VIDEO_EXTENSIONS = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}
MANIFEST = "manifest.jsonl"
FINISHED = ("done", "skipped", "failed")

DEFAULTS = {  # pipeline settings on top of sfm_tracks.pseudo_labels.DEFAULT_CONF
    "max_frames": 64,
    "max_side": 512,
}


# -- inputs and shards -------------------------------------------------------------------------

def collect_inputs(inputs: Sequence[str]) -> list[Path]:
    """Sorted, de-duplicated absolute video paths from files, folders and .txt lists.

    Raises ValueError when two videos share a stem (they would share OUTDIR/<stem>.npz)."""
    out = set()
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out.update(q.resolve() for q in p.iterdir() if q.is_file() and q.suffix.lower() in VIDEO_EXTENSIONS)
        elif p.suffix.lower() == ".txt":
            lines = [ln.strip() for ln in p.read_text().splitlines()]
            out.update(collect_inputs([str(p.parent / ln) for ln in lines if ln and not ln.startswith("#")]))
        else:
            out.add(p.resolve())  # missing files are reported as failed videos, not here
    paths = sorted(out, key=str)
    stems: dict = {}
    for p in paths:
        stems.setdefault(p.stem, []).append(str(p))
    clash = {s: v for s, v in stems.items() if len(v) > 1}
    if clash:
        raise ValueError(f"videos with the same stem would overwrite each other's labels: {clash}")
    return paths


def parse_shard(shard: Optional[str]) -> tuple[int, int]:
    """(index, count) from "I/N", else from torchrun's RANK / WORLD_SIZE, else (0, 1)."""
    if shard:
        i, n = (int(x) for x in shard.split("/"))
    else:
        i, n = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if not 0 <= i < n:
        raise ValueError(f"shard {i}/{n}: need 0 <= I < N")
    return i, n


def shard_inputs(paths: Sequence[Path], index: int, count: int) -> list[Path]:
    """Round-robin over the sorted paths: the shards partition the inputs."""
    return sorted(paths, key=str)[index::count]


# -- files -------------------------------------------------------------------------------------

def _fsync_dir(path: Path) -> None:
    fd = os.open(str(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_npz(path: Path, arrays: dict) -> None:
    """np.savez to a temp file, fsync, rename, fsync the folder: the .npz is complete or absent."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def read_manifest(path: Path) -> dict:
    """{video path: last record}; torn or garbled lines (a kill mid-write) are ignored."""
    records = {}
    if not path.is_file():
        return records
    for line in path.read_text(errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and "video" in rec:
            records[rec["video"]] = rec
    return records


def append_manifest(path: Path, record: dict) -> None:
    """One JSON line, fsynced. A torn last line (no newline) gets one first so it stays isolated."""
    line = json.dumps(record) + "\n"
    with open(path, "a+b") as f:
        if f.tell() > 0:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                line = "\n" + line
        f.write(line.encode())
        f.flush()
        os.fsync(f.fileno())


# -- one video ---------------------------------------------------------------------------------

def load_video(path: Path, max_frames: Optional[int], max_side: Optional[int]) -> tuple[np.ndarray, tuple, tuple]:
    """(frames at tracked size, original (H, W), tracked (H, W)); VideoError when unreadable/too short."""
    frames, original = [], None
    for _, f in iter_frames(path, max_frames=max_frames):
        original = original or f.shape[:2]
        frames.append(resize_max_side(f, max_side))
    if len(frames) < 2:
        raise VideoError(f"{path} gives {len(frames)} frame(s), at least 2 needed")
    frames = np.stack(frames)
    return frames, original, frames.shape[1:3]


def label_file(path: Path, outdir: Path, teachers, conf: dict) -> dict:
    """Label one video and write OUTDIR/<stem>.npz; returns its manifest record (without the path)."""
    t0 = time.time()
    frames, original, size = load_video(path, conf["max_frames"], conf["max_side"])
    labels = label_video(frames, teachers, path.stem, conf)
    scale = np.array([size[1] / original[1], size[0] / original[0]], np.float32)  # (sx, sy)
    out = outdir / f"{path.stem}.npz"
    write_npz(out, {
        "queries": labels.queries.astype(np.float32),
        "tracks": labels.tracks.astype(np.float32),
        "visible": labels.visible.astype(bool),
        "cycle_ok": labels.cycle_ok.astype(bool),
        "geo_state": labels.geo_state.astype(np.int8),
        "teacher": np.array(labels.teacher),
        "video_path": np.array(str(path)),
        "num_frames": np.int64(len(frames)),
        "frame_size": np.array(size, np.int64),  # (H, W) the coordinates refer to
        "original_size": np.array(original, np.int64),  # (H, W) of the decoded video
        "scale": scale,  # stored = (original + 0.5) * scale - 0.5, per axis (x, y)
        "note": np.array(labels.note),
    })
    return {"status": "done", "labels": out.name, "teacher": labels.teacher, "num_frames": len(frames),
            "frame_size": list(size), "num_tracks": int(labels.tracks.shape[1]), "note": labels.note,
            "stats": labels.stats, "seconds": round(time.time() - t0, 2)}


# -- the run -----------------------------------------------------------------------------------

def run(inputs: Sequence[str], outdir, conf: Optional[dict] = None, teachers=None, teacher_names=("lk",),
        checkpoint: str = "default", device: str = "cpu", shard: Optional[str] = None, mode: str = "exact") -> dict:
    """Label this shard's videos not yet in the manifest; returns the summary dict."""
    conf = {**DEFAULT_CONF, **DEFAULTS, **(conf or {})}
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    index, count = parse_shard(shard)
    paths = shard_inputs(collect_inputs(inputs), index, count)
    manifest = outdir / MANIFEST
    finished = {v for v, r in read_manifest(manifest).items() if r.get("status") in FINISHED}
    todo = [p for p in paths if str(p) not in finished]
    summary = {"shard": f"{index}/{count}", "inputs": len(paths), "already_in_manifest": len(paths) - len(todo),
               "done": 0, "skipped": 0, "failed": 0, "labels": label_stats(*(np.zeros((0, 0), t) for t in (bool, bool, np.int8)))}
    if todo and teachers is None:  # build once, up front: a missing checkpoint fails the run, not every video
        teachers = [(n, make_teacher(n, checkpoint, device, mode)) for n in teacher_names]
    for path in tqdm(todo, desc=f"relabel {index}/{count}", dynamic_ncols=True):
        try:
            record = label_file(path, outdir, teachers, conf)
        except TooFewQueries as e:
            record = {"status": "skipped", "reason": str(e)}
        except Exception as e:  # one bad video must not end the run
            log.warning("%s failed: %s", path, e)
            record = {"status": "failed", "reason": f"{type(e).__name__}: {e}"}
        append_manifest(manifest, {"video": str(path), **record})
        summary[record["status"]] += 1
        for k, v in record.get("stats", {}).items():
            summary["labels"][k] += v
    return summary


def format_summary(s: dict) -> str:
    lab = s["labels"]
    return (f"shard {s['shard']}: {s['inputs']} videos ({s['already_in_manifest']} already in the manifest); "
            f"this run: {s['done']} done, {s['skipped']} skipped (too few SIFT points), {s['failed']} failed\n"
            f"observations: {lab['visible']} visible -> {lab['after_cycle']} after the cycle filter -> "
            f"{lab['verified']} verified / {lab['unverifiable']} unverifiable / {lab['rejected']} rejected "
            f"by the 3D filter -> {lab['kept']} kept")


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", help="video files, folders of videos, or .txt lists")
    p.add_argument("-o", "--output", required=True, help="OUTDIR for <stem>.npz and manifest.jsonl")
    p.add_argument("--teachers", default="lk", help=f"comma-separated subset of {','.join(TEACHER_NAMES)}")
    p.add_argument("--checkpoint", default="default", help="CoTracker3 teachers' weights (default: best found)")
    p.add_argument("--num-queries", type=int, default=DEFAULT_CONF["num_queries"])
    p.add_argument("--cycle-threshold", type=float, default=DEFAULT_CONF["cycle_threshold"], help="px")
    p.add_argument("--no-geometric-filter", action="store_true", help="skip the 3D filter (geo_state all 0)")
    p.add_argument("--shard", help="I/N: label every N-th input starting at I (default: RANK/WORLD_SIZE)")
    p.add_argument("--device", default="cpu")
    add_fast_flag(p)
    p.add_argument("--max-frames", type=int, default=DEFAULTS["max_frames"])
    p.add_argument("--max-side", type=int, default=DEFAULTS["max_side"], help="track at this size (px); 0 = original")
    p.add_argument("--seed", type=int, default=DEFAULT_CONF["seed"])
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    names = [n.strip() for n in args.teachers.split(",") if n.strip()]
    bad = set(names) - set(TEACHER_NAMES)
    if bad:
        p.error(f"unknown teachers {sorted(bad)}; choose from {TEACHER_NAMES}")
    conf = {"num_queries": args.num_queries, "cycle_threshold": args.cycle_threshold,
            "geometric_filter": not args.no_geometric_filter, "max_frames": args.max_frames,
            "max_side": args.max_side or None, "seed": args.seed}
    summary = run(args.inputs, args.output, conf, teacher_names=names, checkpoint=args.checkpoint,
                  device=args.device, shard=args.shard, mode=tracker_mode(args.fast, args.device))
    print(format_summary(summary))
    return summary


if __name__ == "__main__":
    main()
