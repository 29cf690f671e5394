"""pipelines.relabel refuses bad input with one `error:` line and exit status 2, before decoding any video;
it leaves nothing behind that it created and deletes nothing that was there."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipelines import relabel
from sfm_tracks.video import write_video
from tests.synthetic import textured_video

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--teachers", "lk", "--num-queries", "24", "--max-frames", "8", "--max-side", "64", "--no-geometric-filter"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    write_video(path, textured_video(T=8, H=48, W=64, velocity=(1.0, 0.5)))
    return path


@pytest.fixture
def no_decoding(monkeypatch):
    """Refused runs must not decode a single frame."""
    def boom(*a, **k):
        raise AssertionError("a video was decoded")
    monkeypatch.setattr(relabel, "iter_frames", boom)


def tree(folder: Path) -> dict:
    """{relative path: bytes or 'dir'} of everything under `folder`."""
    return {str(p.relative_to(folder)): ("dir" if p.is_dir() else p.read_bytes()) for p in sorted(folder.rglob("*"))}


def refused(capsys, argv, only_line=True) -> str:
    """Run the CLI, insist on exit status 2 and one stderr line `error: ...` (the only line, or the last
    after the progress bar and per-video warnings); return that line."""
    try:
        status = relabel.main([str(a) for a in argv])
    except SystemExit as e:  # argparse's own complaints
        status = e.code
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2, err
    assert not any("Traceback" in line for line in err), err
    assert [line for line in err if line.startswith("error: ")] == err[-1:], err
    assert len(err) == 1 or not only_line, err
    return err[-1]


def test_refused_before_anything_is_written(tmp_path, clip, capsys, no_decoding):
    out = tmp_path / "new" / "out"
    as_file = tmp_path / "taken"
    as_file.write_text("keep me")
    before = tree(tmp_path)
    cases = {
        "missing list": ([tmp_path / "list.txt", "-o", out], f"no such file or folder: {tmp_path / 'list.txt'}"),
        "missing video": ([tmp_path / "nope.mp4", "-o", out], "no such file or folder"),
        "-o is a file": ([clip, "-o", as_file], f"output {as_file} exists and is not a folder"),
        "-o under a file": ([clip, "-o", as_file / "out"], f"{as_file} is not a folder"),
        "shard out of range": ([clip, "-o", out, "--shard", "2/2"], "shard 2/2 does not exist"),
        "shard not I/N": ([clip, "-o", out, "--shard", "x"], "--shard 'x': expected I/N"),
        "negative shard": ([clip, "-o", out, "--shard=-1/2"], "shard -1/2 does not exist"),
        "missing checkpoint": ([clip, "-o", out, "--teachers", "cotracker3", "--checkpoint", tmp_path / "w.pth"],
                               f"checkpoint not found: {tmp_path / 'w.pth'}"),
        "unknown teacher": ([clip, "-o", out, "--teachers", "lk,sift"], "--teachers 'lk,sift'"),
        "no teacher": ([clip, "-o", out, "--teachers", ","], "choose one or more of"),
        "bad device": ([clip, "-o", out, "--device", "gpu7"], "--device 'gpu7': not a torch device"),
        "zero queries": ([clip, "-o", out, "--num-queries", "0"], "argument --num-queries: expected an integer >= 1"),
        "one frame": ([clip, "-o", out, "--max-frames", "1"], "at least 2 frames"),
        "nan threshold": ([clip, "-o", out, "--cycle-threshold", "nan"], "expected a finite number > 0"),
        "negative seed": ([clip, "-o", out, "--seed=-1"], "argument --seed: expected an integer >= 0"),
        "unknown option": ([clip, "-o", out, "--frames", "3"], "unrecognized arguments: --frames 3"),
    }
    for name, (argv, expect) in cases.items():
        line = refused(capsys, argv)
        assert expect in line, (name, line)
        assert tree(tmp_path) == before, name  # nothing created, nothing changed


def test_bad_torchrun_environment(tmp_path, clip, capsys, monkeypatch, no_decoding):
    monkeypatch.setenv("RANK", "x")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert "RANK='x' / WORLD_SIZE='2': expected integers" in refused(capsys, [clip, "-o", tmp_path / "out"])
    monkeypatch.setenv("RANK", "2")
    assert "RANK/WORLD_SIZE: shard 2/2 does not exist" in refused(capsys, [clip, "-o", tmp_path / "out"])
    assert list(tmp_path.iterdir()) == []


def test_bad_files_named_on_the_command_line(tmp_path, clip, capsys, no_decoding):
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.md").write_text("no videos here")
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\x00\x81 not text")
    (tmp_path / "loop.txt").write_text("inner.txt\n")
    (tmp_path / "inner.txt").write_text(f"{clip}\nloop.txt\n")
    for stem_dir in ("a", "b"):
        (tmp_path / stem_dir).mkdir()
        (tmp_path / stem_dir / "x.mp4").write_bytes(clip.read_bytes())
    out = tmp_path / "out"
    before = tree(tmp_path)
    cases = {
        "zero-length video": ([tmp_path / "empty.mp4"], f"empty file (0 bytes): {tmp_path / 'empty.mp4'}"),
        "empty list": ([tmp_path / "empty.txt"], "empty file (0 bytes)"),
        "folder without videos": ([tmp_path / "notes"], "no videos"),
        "list that is not text": ([tmp_path / "binary.txt"], f"cannot read list file {tmp_path / 'binary.txt'}"),
        "list including itself": ([tmp_path / "loop.txt"], f"list file {tmp_path / 'loop.txt'} includes itself"),
        "same stem": ([tmp_path / "a", tmp_path / "b"],
                      f"same file stem would write the same OUTDIR/<stem>.npz: {tmp_path / 'a' / 'x.mp4'} and {tmp_path / 'b' / 'x.mp4'}"),
    }
    for name, (inputs, expect) in cases.items():
        line = refused(capsys, [*inputs, "-o", out])
        assert expect in line, (name, line)
        assert tree(tmp_path) == before, name


def test_every_video_failing_is_an_error(tmp_path, capsys):
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "empty.mp4").write_bytes(b"")
    (videos / "garbage.mov").write_bytes(b"\x00\x00\x00\x18ftypqt   not a movie" * 8)
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("a user's file")
    line = refused(capsys, [videos, "-o", out, *FAST], only_line=False)
    assert line.startswith("error: all 2 videos of this run failed (") and "VideoError" in line and "not retried" in line
    m = relabel.read_manifest(out / relabel.MANIFEST)
    assert {r["status"] for r in m.values()} == {"failed"} and len(m) == 2
    assert sorted(p.name for p in out.iterdir()) == ["manifest.jsonl", "mine.txt"]  # no npz, no temp file
    assert (out / "mine.txt").read_text() == "a user's file"


def test_a_foreign_npz_is_not_overwritten(tmp_path, clip, capsys):
    out = tmp_path / "out"
    out.mkdir()
    np.savez(out / "clip.npz", mine=np.arange(3))
    before = (out / "clip.npz").read_bytes()
    line = refused(capsys, [clip, "-o", out, *FAST], only_line=False)
    assert "exists and is not this video's labels; not overwritten" in line
    assert (out / "clip.npz").read_bytes() == before


def test_some_videos_failing_is_not(tmp_path, clip, capsys):
    lst = tmp_path / "list.txt"
    lst.write_text(f"{clip}\nmissing.mp4\n")
    assert relabel.main([str(lst), "-o", str(tmp_path / "out"), *FAST]) == 0
    assert "1 done, 0 skipped (too few SIFT points), 1 failed" in capsys.readouterr().out


def test_a_stopped_run_removes_only_the_folders_it_created(tmp_path, clip, monkeypatch):
    class Killed(BaseException):
        pass

    def stop(*a, **k):
        raise Killed()

    monkeypatch.setattr(relabel, "label_or_failure", stop)
    with pytest.raises(Killed):
        relabel.run([str(clip)], tmp_path / "a" / "b", teacher_names=("lk",))
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "kept").mkdir()
    with pytest.raises(Killed):
        relabel.run([str(clip)], tmp_path / "kept" / "new", teacher_names=("lk",))
    assert [p.name for p in tmp_path.iterdir()] == ["kept"] and list((tmp_path / "kept").iterdir()) == []


def test_script_exit_status_without_traceback(tmp_path):
    res = subprocess.run([sys.executable, str(ROOT / "pipelines" / "relabel.py"), str(tmp_path / "list.txt"),
                          "-o", str(tmp_path / "out"), "--shard", "0/1"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [f"error: no such file or folder: {tmp_path / 'list.txt'}"]
    assert list(tmp_path.iterdir()) == []
