"""pipelines.evaluate refuses bad paths, weights, data files and option values with one `error:` line and
exit status 2; hostile checkpoints and pickles run no code; nothing is written on failure."""
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pipelines import evaluate
from sfm_tracks.video import write_video
from tests.synthetic import textured_video

ROOT = Path(__file__).resolve().parents[1]


class Planted:
    """Unpickling this runs a shell command: what a hostile checkpoint or data file would carry."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os
        return os.system, (f"touch {self.marker}",)


def tree(folder: Path) -> dict:
    return {str(p.relative_to(folder)): ("dir" if p.is_dir() else p.read_bytes()) for p in sorted(folder.rglob("*"))}


def refused(capsys, argv) -> str:
    try:
        status = evaluate.main([str(a) for a in argv])
    except SystemExit as e:  # argparse's own complaints
        status = e.code
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert status == 2 and len(err) == 1 and err[0].startswith("error: "), err
    assert captured.out == ""
    return err[0]


@pytest.fixture
def data(tmp_path):
    """A valid one-clip TAP-Vid pickle, and a guard that fails if any data is read."""
    rng = np.random.default_rng(0)
    entry = {"video": rng.integers(0, 255, (4, 16, 16, 3), dtype=np.uint8),
             "points": rng.uniform(0.2, 0.8, (3, 4, 2)).astype(np.float32), "occluded": np.zeros((3, 4), bool)}
    path = tmp_path / "set.pkl"
    path.write_bytes(pickle.dumps({"clip": entry}))
    return path


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_refused_before_reading_data(tmp_path, data, capsys, monkeypatch):
    def no_reading(*a, **k):
        raise AssertionError("data was read")

    monkeypatch.setattr(evaluate, "tapvid_samples", no_reading)
    marker = tmp_path / "pwned"
    torch.save({"model": Planted(marker)}, tmp_path / "hostile.pth")
    (tmp_path / "garbage.pth").write_bytes(b"\x80\x04 not a checkpoint")
    (tmp_path / "empty.pth").write_bytes(b"")
    (tmp_path / "a_folder").mkdir()
    (tmp_path / "a_file").write_text("x")
    out = tmp_path / "new" / "m.json"
    before = tree(tmp_path)
    cases = {
        "missing checkpoint": (["--checkpoint", tmp_path / "w.pth"], f"checkpoint not found: {tmp_path / 'w.pth'}"),
        "garbage checkpoint": (["--checkpoint", tmp_path / "garbage.pth"], f"cannot read checkpoint {tmp_path / 'garbage.pth'}"),
        "empty checkpoint": (["--checkpoint", tmp_path / "empty.pth"], f"checkpoint {tmp_path / 'empty.pth'} is empty (0 bytes)"),
        "hostile checkpoint": (["--checkpoint", tmp_path / "hostile.pth"], "refusing to unpickle it"),
        "missing data": (["--data", tmp_path / "nope.pkl"], f"no such file or folder: {tmp_path / 'nope.pkl'}"),
        "-o is a folder": (["-o", tmp_path / "a_folder"], "is a folder; name the JSON file"),
        "-o under a file": (["-o", tmp_path / "a_file" / "m.json"], f"cannot write under {tmp_path / 'a_file'}"),
        "zero iters": (["--iters", "0"], "argument --iters: expected an integer >= 1"),
        "negative clips": (["--num-clips=-2"], "argument --num-clips: expected an integer >= 1"),
        "threads not a number": (["--threads", "two"], "argument --threads: expected an integer >= 1, got 'two'"),
        "query mode": (["--query-mode", "diagonal"], "argument --query-mode: invalid choice"),
        "badja and data": (["--badja"], "--badja and --data"),
        "-o is the data": (["-o", data], "is the input data; writing the metrics there would destroy it"),
    }
    for name, (extra, expect) in cases.items():
        argv = ["--checkpoint", "lk", "--data", data, "-o", out, *extra]
        line = refused(capsys, argv)
        assert expect in line, (name, line)
        assert tree(tmp_path) == before, name  # nothing written, no folder created
    assert not marker.exists()


def test_bad_data_files(tmp_path, data, capsys):
    marker = tmp_path / "pwned"
    (tmp_path / "hostile.pkl").write_bytes(pickle.dumps({"clip": {"video": Planted(marker)}}))
    (tmp_path / "truncated.pkl").write_bytes(data.read_bytes()[:100])
    (tmp_path / "shards").mkdir()
    out = tmp_path / "m.json"
    cases = {
        "hostile.pkl": r"refusing to load (posix|os)\.system",
        "truncated.pkl": "cannot read TAP-Vid pickle",
        "shards": "no .pkl files in",
    }
    for name, expect in cases.items():
        line = refused(capsys, ["--checkpoint", "lk", "--data", tmp_path / name, "-o", out])
        assert __import__("re").search(expect, line), (name, line)
    assert not marker.exists() and not out.exists()


def test_badja_files(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(evaluate, "BADJA_VIDEO", tmp_path / "bear.mp4")
    monkeypatch.setattr(evaluate, "BADJA_KEYPOINTS", tmp_path / "keypoints.npz")
    assert refused(capsys, ["--checkpoint", "lk", "--badja"]) == f"error: no such file or folder: {tmp_path / 'bear.mp4'}"
    write_video(tmp_path / "bear.mp4", textured_video(T=4, H=32, W=32))
    np.savez(tmp_path / "keypoints.npz", frame_index=np.arange(2), xy=np.zeros((2, 3, 2)))  # no visible / joint_id
    line = refused(capsys, ["--checkpoint", "lk", "--badja"])
    assert line.startswith(f"error: cannot read BADJA keypoints {tmp_path / 'keypoints.npz'}: KeyError")
    np.savez(tmp_path / "keypoints.npz", frame_index=np.arange(2), xy=np.zeros((2, 3, 2)), visible=np.ones((2, 4), bool),
             joint_id=np.arange(3))
    assert "do not fit 2 frames x 3 joints" in refused(capsys, ["--checkpoint", "lk", "--badja"])


def test_script_exit_status_without_traceback(tmp_path):
    res = subprocess.run([sys.executable, str(ROOT / "pipelines" / "evaluate.py"), "--checkpoint", "lk",
                          "--data", str(tmp_path / "nope.pkl")], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [f"error: no such file or folder: {tmp_path / 'nope.pkl'}"]
