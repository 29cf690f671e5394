"""reconstruct.py never destroys what it did not create and answers bad output paths with one line.

Overlapping input/output, --overwrite of foreign folders, read-only locations, kills mid-run, file modes,
checkpoint errors before decoding, too short and texture-less input.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from cotracker3.data.synthetic import generate_clip
from pipelines.reconstruct import main
from sfm_tracks import write_video
from sfm_tracks.outdir import MARKER, remove_stale

ROOT = Path(__file__).resolve().parents[1]
T, SIZE = 12, 128
FAST = ["--tracker", "lk", "--no-video", "-q"]


@pytest.fixture(scope="module")
def clip():
    return generate_clip(0, num_frames=T, height=SIZE, width=SIZE, num_tracks=8, dynamic=False, camera_mode="orbit")["video"]


def _image_dir(folder: Path, frames) -> Path:
    folder.mkdir(parents=True)
    for t, f in enumerate(frames):
        cv2.imwrite(str(folder / f"{t:03d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    return folder


def _snapshot(root: Path) -> dict:
    """{relative path: bytes} of every file below root (folders as None)."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def _fails(argv, capsys, needle: str) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert err and err[-1].startswith("error: ") and needle in err[-1], err
    assert not any("Traceback" in line for line in err)
    return err[-1]


def _leftovers(folder: Path) -> list:
    return [p.name for p in folder.iterdir() if ".work-" in p.name or ".old-" in p.name or ".tmp-" in p.name]


def test_output_overlapping_the_input_is_refused_and_nothing_is_deleted(clip, tmp_path, capsys):
    images = _image_dir(tmp_path / "data" / "images", clip)
    (images / "notes.txt").write_text("mine")
    video = tmp_path / "data" / "clip.mp4"
    write_video(video, clip)
    cases = [
        ([str(images), "-o", str(images), "--overwrite"], "is the input"),
        ([str(images), "-o", str(images / "out")], "lies inside the input"),
        ([str(images), "-o", str(tmp_path / "data"), "--overwrite"], "contains the input"),
        ([str(images), "-o", str(tmp_path), "--overwrite"], "contains the input"),
        ([str(video), "-o", str(video), "--overwrite"], "is the input"),
        ([str(video), "-o", str(tmp_path / "data"), "--overwrite"], "contains the input"),
        ([str(images), "-o", str(tmp_path / "m" / "out"), "--mask-dir", str(tmp_path / "m")], "lies inside the mask folder"),
        ([str(images), "-o", str(tmp_path / "m"), "--overwrite", "--mask-dir", str(tmp_path / "m" / "masks")], "contains the mask folder"),
    ]
    (tmp_path / "m" / "masks").mkdir(parents=True)
    before = _snapshot(tmp_path)
    for argv, needle in cases:
        _fails(argv + FAST, capsys, needle)
    assert _snapshot(tmp_path) == before
    assert not _leftovers(tmp_path) and not _leftovers(tmp_path / "data")


def test_a_video_may_write_beside_itself(clip, tmp_path, capsys):
    video = tmp_path / "clip.mp4"
    write_video(video, clip)
    assert main([str(video), "-o", str(tmp_path / "out")] + FAST) == 0
    assert video.is_file() and (tmp_path / "out" / "report.json").is_file()


def test_overwrite_replaces_only_our_own_results(clip, tmp_path, capsys):
    images = _image_dir(tmp_path / "images", clip)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("years of work")
    _fails([str(images), "-o", str(foreign)] + FAST, capsys, "exists and is not empty")
    _fails([str(images), "-o", str(foreign), "--overwrite"] + FAST, capsys, "not a previous sfm-tracks result")
    (foreign / "report.json").write_text(json.dumps({"frames_total": 1}))  # not our keys
    _fails([str(images), "-o", str(foreign), "--overwrite"] + FAST, capsys, "not a previous sfm-tracks result")
    assert (foreign / "thesis.tex").read_text() == "years of work"
    afile = tmp_path / "a_file"
    afile.write_text("x")
    _fails([str(images), "-o", str(afile), "--overwrite"] + FAST, capsys, "is not a folder")
    assert afile.read_text() == "x"

    out = tmp_path / "out"
    old_umask = os.umask(0o022)
    try:
        assert main([str(images), "-o", str(out)] + FAST) == 0
    finally:
        os.umask(old_umask)
    report = json.loads((out / "report.json").read_text())
    for rel in ["points.ply", "transforms.json", "tracks.npz", "report.json", "sparse/0/cameras.bin", "images/000.png"]:
        assert (out / rel).stat().st_mode & 0o777 == 0o644, rel
    for rel in ["sparse", "sparse/0", "images"]:
        assert (out / rel).stat().st_mode & 0o777 == 0o755, rel
    (out / "points.ply").write_bytes(b"marker of the old result")
    assert main([str(images), "-o", str(out), "--overwrite"] + FAST) == 0  # a previous result of ours: replaced
    assert (out / "points.ply").read_bytes() != b"marker of the old result"
    assert json.loads((out / "report.json").read_text())["frames_total"] == report["frames_total"]
    (out / "my_notes.txt").write_text("keep")  # our result plus a file of the user's: not ours any more
    _fails([str(images), "-o", str(out), "--overwrite"] + FAST, capsys, "not a previous sfm-tracks result")
    assert (out / "my_notes.txt").read_text() == "keep"
    assert not _leftovers(tmp_path)


def test_read_only_location_is_one_line(clip, tmp_path, capsys):
    images = _image_dir(tmp_path / "images", clip)
    if os.geteuid() == 0:  # root writes through permission bits; /sys refuses everyone
        target = Path("/sys/sfm_tracks_test/out")
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        target = ro / "sub" / "out"
    _fails([str(images), "-o", str(target)] + FAST, capsys, "cannot write to output location")
    assert not target.parent.exists()


def test_failed_run_removes_the_parents_it_created_only(tmp_path, capsys):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    (tmp_path / "existing").mkdir()
    out = tmp_path / "existing" / "new1" / "new2" / "out"
    _fails([str(empty), "-o", str(out)] + FAST, capsys, "empty video")
    assert (tmp_path / "existing").is_dir() and not (tmp_path / "existing" / "new1").exists()


def test_stale_work_folders_are_removed_only_when_ours_and_dead(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "out"
    stale = tmp_path / f".out.work-{dead.pid}-0000"
    alive = tmp_path / f".out.work-{os.getppid()}-0001"
    unmarked = tmp_path / ".out.work-1-0002"
    other = tmp_path / f".other.work-{dead.pid}-0003"
    for folder, pid in [(stale, dead.pid), (alive, os.getppid()), (unmarked, None), (other, dead.pid)]:
        folder.mkdir()
        (folder / "frame.bin").write_bytes(b"x")
        if pid is not None:
            (folder / MARKER).write_text(json.dumps({"pid": pid, "host": socket.gethostname()}))
    assert remove_stale(out) == [stale]
    assert not stale.exists() and alive.exists() and unmarked.exists() and other.exists()
    # A swap killed between its two renames: the previous result (ours) goes back in place.
    old = tmp_path / f".out.old-{dead.pid}"
    old.mkdir()
    (old / "report.json").write_text(json.dumps({k: 1 for k in ["frames_total", "frames_registered", "points3d", "tracker", "config"]}))
    remove_stale(out)
    assert (out / "report.json").is_file() and not old.exists()
    foreign_old = tmp_path / f".out.old-{dead.pid}x"
    foreign_old.mkdir()
    remove_stale(out)
    assert foreign_old.exists()


def test_a_killed_run_leaves_no_frames_and_the_next_run_cleans_up(clip, tmp_path):
    """SIGKILL during the run: what remains beside OUTDIR is a marked work folder without decoded frames."""
    images = _image_dir(tmp_path / "images", np.concatenate([clip] * 4))  # long enough to kill mid-way
    out = tmp_path / "out"
    cmd = [sys.executable, str(ROOT / "pipelines" / "reconstruct.py"), str(images), "-o", str(out)] + FAST
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and not list(tmp_path.glob(".out.work-*/" + MARKER)):
        time.sleep(0.02)
    time.sleep(0.5)  # inside decoding / tracking
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    left = list(tmp_path.glob(".out.work-*"))
    assert len(left) == 1 and not out.exists()
    # The marker, staged outputs and COLMAP's database at most; decoded frames live in unlinked files.
    assert (left[0] / MARKER).is_file() and {p.name for p in left[0].iterdir()} <= {MARKER, "out", "colmap"}
    res = subprocess.run(cmd + ["--max-frames", str(T)], capture_output=True, text=True, timeout=300)  # any later run cleans
    assert res.returncode == 0, res.stderr
    assert not list(tmp_path.glob(".out.work-*")) and (out / "report.json").is_file()


def test_checkpoint_is_checked_before_frames_are_decoded(tmp_path, capsys, monkeypatch):
    def no_decoding(*a, **k):
        raise AssertionError("frames decoded before the checkpoint was checked")

    monkeypatch.setattr("sfm_tracks.pipeline.load_frames", no_decoding)
    bad = tmp_path / "weights.pth"
    bad.write_bytes(b"")
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\0" * 100)
    _fails([str(video), "-o", str(tmp_path / "out"), "--tracker", "cotracker3", "--checkpoint", str(bad), "-q"], capsys, "is empty (0 bytes)")
    assert not (tmp_path / "out").exists() and not _leftovers(tmp_path)


def test_too_short_and_textureless_input_say_what_is_wrong(clip, tmp_path, capsys):
    two = tmp_path / "two.mp4"
    write_video(two, clip[:2])
    _fails([str(two), "-o", str(tmp_path / "o1")] + FAST, capsys, "gives only 2 frame(s), at least 3 needed")
    flat = tmp_path / "flat.mp4"
    write_video(flat, np.full((8, 64, 64, 3), 120, np.uint8))
    _fails([str(flat), "-o", str(tmp_path / "o2")] + FAST, capsys, "no trackable texture")
    smooth = tmp_path / "smooth.mp4"  # not flat, but no corner anywhere: a horizontal ramp
    ramp = np.broadcast_to(np.linspace(0, 255, 64, dtype=np.float32)[None, :, None], (64, 64, 3)).astype(np.uint8)
    write_video(smooth, np.stack([ramp] * 8))
    _fails([str(smooth), "-o", str(tmp_path / "o3")] + FAST, capsys, "no trackable texture: SIFT found no keypoints")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flat.mp4", "smooth.mp4", "two.mp4"]


def test_subprocess_prints_one_line_without_traceback(clip, tmp_path):
    images = _image_dir(tmp_path / "images", clip[:4])
    res = subprocess.run([sys.executable, str(ROOT / "pipelines" / "reconstruct.py"), str(images), "-o", str(images), "--overwrite",
                          "--tracker", "lk"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [f"error: output folder {images} is the input {images}; choose another -o"]
    assert len(list(images.iterdir())) == 4


def test_bad_options_are_one_line(clip, tmp_path, capsys):
    images = _image_dir(tmp_path / "images", clip)
    black = tmp_path / "black_masks"
    black.mkdir()
    for t in range(T):
        cv2.imwrite(str(black / f"{t:03d}.png"), np.zeros((SIZE, SIZE), np.uint8))
    cases = [
        (["--max-side", "8"], "--max-side must be >= 32 px"),
        (["--window", "1"], "--window must be >= 2"),
        (["--cycle", "-2"], "--cycle must be >= 0"),
        (["--camera-model", "FISHEYE"], "camera model 'FISHEYE' not supported"),
        (["--tracker", "cotracker3", "--checkpoint", str(tmp_path)], "checkpoint not found"),
        (["--mask-dir", str(black)], "no query points: the masks exclude every pixel"),
    ]
    for extra, needle in cases:
        _fails([str(images), "-o", str(tmp_path / "out")] + FAST + extra, capsys, needle)
    tiny = _image_dir(tmp_path / "tiny", [cv2.resize(f, (24, 24)) for f in clip])
    _fails([str(tiny), "-o", str(tmp_path / "out")] + FAST, capsys, "need >= 32 px on each side")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["black_masks", "images", "tiny"]


def test_ctrl_c_leaves_nothing(clip, tmp_path, capsys, monkeypatch):
    images = _image_dir(tmp_path / "images", clip)

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr("sfm_tracks.pipeline.reconstruct", interrupted)
    out = tmp_path / "new" / "out"
    assert main([str(images), "-o", str(out)] + FAST) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == "error: interrupted; nothing was written"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images"]


def test_an_output_written_beside_mapping_fails_the_run_and_leaves_nothing(clip, tmp_path, capsys, monkeypatch):
    """tracks.mp4 is written on a second thread while the mapper runs: its error must still end the run."""
    images = _image_dir(tmp_path / "images", clip)

    def disk_full(*a, **k):
        raise OSError("No space left on device")

    monkeypatch.setattr("sfm_tracks.outputs.write_tracks_video", disk_full)
    out = tmp_path / "new" / "out"
    assert main([str(images), "-o", str(out), "--tracker", "lk", "-q"]) == 2
    assert "No space left on device" in capsys.readouterr().err.strip().splitlines()[-1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images"]
