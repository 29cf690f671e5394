"""Pseudo-label real videos: ``python -m pipelines.relabel INPUT... -o OUTDIR [--teachers auto|lk,cotracker3] ...``.

INPUT: video files, folders of videos, or .txt files listing them (one per line, relative to the
.txt). Writes OUTDIR/<video stem>.npz per video and appends one line per video to
OUTDIR/manifest.jsonl *after* its .npz is on disk (temp file, fsync, rename), so a killed run
restarted with the same command neither loses nor duplicates anything: videos already in the
manifest (done, skipped or failed) are not redone; a half-written .npz is simply rewritten. An
OUTDIR/<stem>.npz that is not that video's labels is never overwritten (the video is recorded as failed).

The paper's teachers: ``--teachers lk,cotracker3=OFF.safetensors,cotracker3-online=ON.safetensors --epochs 3``
draws a teacher per video for each of 3 epochs; the student's dataset reads the epoch's labels (manifest
``epochs``), so every pass over the videos sees each video as labelled by that pass's teacher.

Scale-out: ``--shard I/N`` (or torchrun's RANK / WORLD_SIZE) takes every N-th of the sorted inputs.
Coordinates are stored in the tracked frame size (``frame_size``; ``scale`` = tracked / original).

Bad input (a missing or empty path named on the command line, an unreadable list, two videos with one
stem, a bad shard, an OUTDIR that cannot be a folder, weights that cannot be loaded) is refused with one
line ``error: ...`` and exit status 2 before any video is decoded or anything is written. A video
found in a folder or list that cannot be decoded is recorded as failed and the run goes on; when
every video of a run fails, the run ends with exit status 2 as well.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from cotracker3 import CheckpointError  # noqa: E402
from pipelines.cli import ArgumentParser, UsageError, add_fast_flag, fail, nonnegative_int, positive_float, positive_int  # noqa: E402
from pipelines.relabel_inputs import collect_inputs, parse_shard, shard_inputs  # noqa: E402
from sfm_tracks.tracking.choice import TRACKERS as TEACHER_NAMES, make_provider as make_teacher, tracker_mode  # noqa: E402
from sfm_tracks.pseudo_labels import (DEFAULT_CONF, TooFewQueries, epoch_teachers, label_stats,  # noqa: E402
                                      label_with_teacher, video_queries)
from sfm_tracks.outdir import InputError, make_folders, missing_folders, remove_empty  # noqa: E402
from sfm_tracks.video import VideoError, iter_frames, resize_max_side  # noqa: E402

log = logging.getLogger("relabel")
MANIFEST = "manifest.jsonl"
FINISHED = ("done", "skipped", "failed")

DEFAULTS = {  # pipeline settings on top of sfm_tracks.pseudo_labels.DEFAULT_CONF
    "epochs": 1,  # teacher draws per video (label files: one per distinct teacher drawn)
    "max_frames": 64,
    "max_side": 512,
}


# -- files -------------------------------------------------------------------------------------

def prepare_outdir(outdir: Path) -> list[Path]:
    """Make OUTDIR (and missing parents) and check it takes files; returns the folders this call created.

    UsageError when OUTDIR or a parent is a file, or OUTDIR cannot be written; nothing is left behind then."""
    try:
        created = make_folders(outdir)
    except InputError as e:
        raise UsageError(str(e)) from None
    except OSError as e:
        raise UsageError(f"cannot write to output folder {outdir}: {e.strerror or e}") from None
    try:
        with tempfile.TemporaryFile(dir=outdir, prefix=".write-test-"):
            pass
    except OSError as e:
        remove_empty(created)
        raise UsageError(f"cannot write to output folder {outdir}: {e.strerror or e}") from None
    return created


def _fsync_dir(path: Path) -> None:
    fd = os.open(str(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_npz(path: Path, arrays: dict) -> None:
    """np.savez to a temp file, fsync, rename, fsync the folder: the .npz is complete or absent."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def read_manifest(path: Path) -> dict:
    """{video path: last record}; torn or garbled lines (a kill mid-write) are ignored."""
    records = {}
    if not path.exists():
        return records
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        raise UsageError(f"cannot read the manifest {path}: {e.strerror or e}") from None
    for line in text.splitlines():
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


def check_replaceable(out: Path, video: Path) -> None:
    """An existing OUTDIR/<stem>.npz is replaced only when it is this video's labels (a run killed
    between the .npz and its manifest line); anything else is not ours to overwrite (FileExistsError)."""
    if not out.exists():
        return
    try:
        with np.load(out, allow_pickle=False) as z:
            ours = "video_path" in z.files and str(z["video_path"]) == str(video)
    except Exception:
        ours = False
    if not ours:
        raise FileExistsError(f"{out} exists and is not this video's labels; not overwritten")


def label_file(path: Path, outdir: Path, teachers, conf: dict) -> dict:
    """Label one video and write OUTDIR/<stem>.npz; returns its manifest record (without the path).

    With ``conf["epochs"]`` > 1 a teacher is drawn per epoch (the paper's random teacher per video and
    epoch); each distinct teacher labels the video once, the epoch-0 one into <stem>.npz and any other
    into <stem>.<teacher>.npz, and the record's ``epochs`` lists the file of each epoch."""
    t0 = time.time()
    drawn = epoch_teachers(teachers, path.stem, conf["seed"], conf["epochs"])
    names = {t: f"{path.stem}.npz" if t == drawn[0] else f"{path.stem}.{t}.npz" for t in dict.fromkeys(drawn)}
    for name in names.values():
        check_replaceable(outdir / name, path)
    frames, original, size = load_video(path, conf["max_frames"], conf["max_side"])
    scale = np.array([size[1] / original[1], size[0] / original[0]], np.float32)  # (sx, sy)
    queries = video_queries(frames, path.stem, conf)  # one SIFT pass, shared by the teachers
    providers = dict(teachers)
    stats, notes = {}, []
    for teacher, name in names.items():
        labels = label_with_teacher(frames, teacher, providers[teacher], queries, conf)
        write_npz(outdir / name, {
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
        stats = {k: stats.get(k, 0) + v for k, v in labels.stats.items()}
        notes.append(labels.note if len(names) == 1 else f"{teacher}: {labels.note}")
    record = {"status": "done", "labels": names[drawn[0]], "teacher": drawn[0], "num_frames": len(frames),
              "frame_size": list(size), "num_tracks": int(labels.tracks.shape[1]), "note": "; ".join(notes),
              "stats": stats, "seconds": round(time.time() - t0, 2)}
    if conf["epochs"] > 1:
        record["epochs"] = [names[t] for t in drawn]
    return record


# -- the run -----------------------------------------------------------------------------------

def build_teachers(names: Sequence[str], checkpoint: str = "default", device: str = "cpu", mode: str = "exact") -> list:
    """[(resolved name, provider)] once per distinct tracker; `auto` is resolved and its reason logged.
    A name may carry its own weights, ``cotracker3-online=PATH``; the others use ``checkpoint``."""
    teachers = {}
    for n in names:
        n, _, weights = n.partition("=")
        provider = make_teacher(n, weights or checkpoint, device, mode)
        log.info("teacher %s: %s", provider.choice.name, provider.choice.reason)
        teachers.setdefault(provider.choice.name, provider)
    return list(teachers.items())


def run(inputs: Sequence[str], outdir, conf: Optional[dict] = None, teachers=None, teacher_names=("auto",),
        checkpoint: str = "default", device: str = "cpu", shard: Optional[str] = None, mode: str = "exact") -> dict:
    """Label this shard's videos not yet in the manifest; returns the summary dict.

    Inputs, shard, teachers (their weights) and OUTDIR are checked before any video is decoded or
    anything is written (UsageError / cotracker3.CheckpointError); per-video problems are recorded
    in the manifest and counted in the summary (``first_failure`` names the first)."""
    conf = {**DEFAULT_CONF, **DEFAULTS, **(conf or {})}
    outdir = Path(outdir)
    index, count = parse_shard(shard)
    paths = shard_inputs(collect_inputs(inputs), index, count)
    try:
        missing_folders(outdir)  # before the teachers' weights are loaded
    except InputError as e:
        raise UsageError(str(e)) from None
    manifest = outdir / MANIFEST
    finished = {v for v, r in read_manifest(manifest).items() if r.get("status") in FINISHED}
    todo = [p for p in paths if str(p) not in finished]
    summary = {"shard": f"{index}/{count}", "inputs": len(paths), "already_in_manifest": len(paths) - len(todo),
               "done": 0, "skipped": 0, "failed": 0, "first_failure": None,
               "labels": label_stats(*(np.zeros((0, 0), t) for t in (bool, bool, np.int8)))}
    if teachers is None:  # built once, up front: a missing checkpoint fails the run, not every video
        if not teacher_names:
            raise UsageError(f"no teachers given; choose from {','.join(TEACHER_NAMES)}")
        teachers = build_teachers(teacher_names, checkpoint, device, mode)
    created = prepare_outdir(outdir)
    try:
        for path in tqdm(todo, desc=f"relabel {index}/{count}", dynamic_ncols=True):
            record = label_or_failure(path, outdir, teachers, conf)
            append_manifest(manifest, {"video": str(path), **record})
            summary[record["status"]] += 1
            if record["status"] == "failed" and summary["first_failure"] is None:
                summary["first_failure"] = f"{path}: {record['reason']}"
            for k, v in record.get("stats", {}).items():
                summary["labels"][k] += v
    finally:
        remove_empty(created)  # only if the run stopped before writing anything
    return summary


def label_or_failure(path: Path, outdir: Path, teachers, conf: dict) -> dict:
    """label_file's record, or a skipped/failed record: one bad video must not end the run."""
    try:
        return label_file(path, outdir, teachers, conf)
    except TooFewQueries as e:
        return {"status": "skipped", "reason": str(e)}
    except Exception as e:
        log.warning("%s failed: %s", path, e)
        return {"status": "failed", "reason": f"{type(e).__name__}: {e}"}


def format_summary(s: dict) -> str:
    lab = s["labels"]
    return (f"shard {s['shard']}: {s['inputs']} videos ({s['already_in_manifest']} already in the manifest); "
            f"this run: {s['done']} done, {s['skipped']} skipped (too few SIFT points), {s['failed']} failed\n"
            f"observations: {lab['visible']} visible -> {lab['after_cycle']} after the cycle filter -> "
            f"{lab['verified']} verified / {lab['unverifiable']} unverifiable / {lab['rejected']} rejected "
            f"by the 3D filter -> {lab['kept']} kept")


def all_failed(summary: dict) -> Optional[str]:
    """The error line's text when this run tried videos and every one failed, else None."""
    if summary["failed"] == 0 or summary["done"] or summary["skipped"]:
        return None
    n = summary["failed"]
    return (f"{'the only video' if n == 1 else f'all {n} videos'} of this run failed ({summary['first_failure']}); "
            "they are recorded as failed in the manifest and not retried while their lines are there")


def check_device(device: str, teacher_names: Sequence[str]) -> None:
    """UsageError for a device torch does not know, or CUDA asked for where there is none."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise UsageError(f"--device {device!r}: not a torch device (cpu, cuda, cuda:N)") from None
    if dev.type == "cuda" and any(n != "lk" for n in teacher_names) and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: no CUDA device available to torch")


def main(argv=None) -> int:
    """The CLI; returns the exit status (0 done, 2 bad input or every video failed)."""
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", help="video files, folders of videos, or .txt lists")
    p.add_argument("-o", "--output", required=True, help="OUTDIR for <stem>.npz and manifest.jsonl")
    p.add_argument("--teachers", default="auto", help=f"comma-separated subset of {','.join(TEACHER_NAMES)} "
                   "(auto: official CoTracker3 weights if found, else the best tracker shipped); NAME=WEIGHTS gives "
                   "one teacher its own weights, e.g. lk,cotracker3=off.safetensors,cotracker3-online=on.safetensors")
    p.add_argument("--epochs", type=positive_int, default=DEFAULTS["epochs"], help="draw a random teacher per video "
                   "for each of this many training epochs (as the paper); each distinct teacher labels the video once")
    p.add_argument("--checkpoint", default="default", help="CoTracker3 teachers' weights (default: best found)")
    p.add_argument("--num-queries", type=positive_int, default=DEFAULT_CONF["num_queries"])
    p.add_argument("--cycle-threshold", type=positive_float, default=DEFAULT_CONF["cycle_threshold"], help="px")
    p.add_argument("--cycle-anchors", type=positive_int, default=DEFAULT_CONF["cycle_anchors"],
                   help="frames per side and track re-queried by the cycle check (its cost grows with them)")
    p.add_argument("--no-refine", action="store_true", help="keep the teachers' raw positions (default: sub-pixel "
                   "refinement with guards, sfm_tracks/tracking/refine.py; observations failing a guard become invisible)")
    p.add_argument("--no-geometric-filter", action="store_true", help="skip the 3D filter (geo_state all 0)")
    p.add_argument("--shard", help="I/N: label every N-th input starting at I (default: RANK/WORLD_SIZE)")
    p.add_argument("--device", default="cpu")
    add_fast_flag(p)
    p.add_argument("--max-frames", type=positive_int, default=DEFAULTS["max_frames"], help="(at least 2 are tracked)")
    p.add_argument("--max-side", type=nonnegative_int, default=DEFAULTS["max_side"], help="track at this size (px); 0 = original")
    p.add_argument("--seed", type=nonnegative_int, default=DEFAULT_CONF["seed"])
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    names = [n.strip() for n in args.teachers.split(",") if n.strip()]
    bad = {n.partition("=")[0] for n in names} - set(TEACHER_NAMES)
    if bad or not names:
        return fail(f"--teachers {args.teachers!r}: choose one or more of {','.join(TEACHER_NAMES)}")
    if args.max_frames < 2:
        return fail(f"--max-frames {args.max_frames}: at least 2 frames are needed to track")
    conf = {"num_queries": args.num_queries, "cycle_threshold": args.cycle_threshold, "cycle_anchors": args.cycle_anchors,
            "geometric_filter": not args.no_geometric_filter, "refine": not args.no_refine, "max_frames": args.max_frames,
            "max_side": args.max_side or None, "seed": args.seed, "epochs": args.epochs}
    try:
        check_device(args.device, names)
        summary = run(args.inputs, args.output, conf, teacher_names=names, checkpoint=args.checkpoint,
                      device=args.device, shard=args.shard, mode=tracker_mode(args.fast, args.device))
    except (UsageError, CheckpointError, OSError) as e:
        return fail(e)
    print(format_summary(summary))
    problem = all_failed(summary)
    return fail(problem) if problem else 0


if __name__ == "__main__":
    sys.exit(main())
