"""pipelines/reconstruct.py end to end: synthetic static scenes with known cameras, video/folder input, bad input."""
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pycolmap
import pytest
import torch

from cotracker3 import CoTrackerThreeOffline
from cotracker3.checkpoint import save_weights
from cotracker3.data.synthetic import generate_clip
from pipelines.reconstruct import main, pose_accuracy
from sfm_tracks import Tracks, write_video
from sfm_tracks.pipeline import track
from sfm_tracks.progress import show_progress
from sfm_tracks.tracking.choice import make_provider

ROOT = Path(__file__).resolve().parents[1]
T, SIZE = 16, 192
OUTPUTS = ["images", "sparse/0/cameras.bin", "sparse/0/images.bin", "sparse/0/points3D.bin", "points.ply", "tracks.npz",
           "transforms.json", "report.json", "tracks.mp4"]


@pytest.fixture(scope="module")
def clip():
    # An orbiting camera: pose accuracy is the point here. Short forward-moving clips are a known hard
    # case (BENCHMARKS.md, Reconstruct) and are not what this test is about.
    return generate_clip(0, num_frames=T, height=SIZE, width=SIZE, num_tracks=8, dynamic=False, camera_mode="orbit")


@pytest.fixture(scope="module")
def image_dir(clip, tmp_path_factory):
    d = tmp_path_factory.mktemp("frames")
    for t, f in enumerate(clip["video"]):
        cv2.imwrite(str(d / f"img_{t:03d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    return d


@pytest.fixture(scope="module")
def video_file(clip, tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    write_video(path, clip["video"], fps=10)
    return path


def _intrinsics(clip) -> str:
    K = clip["intrinsics"]  # tracker convention -> COLMAP's (+0.5 px)
    return f"{K[0, 0]},{K[1, 1]},{K[0, 2] + 0.5},{K[1, 2] + 0.5}"


def _no_model(out: Path):
    assert not (out / "sparse").exists() and not (out / "report.json").exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]  # no staging left over


def test_image_folder_poses_match_ground_truth(clip, image_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([str(image_dir), "-o", str(out), "--tracker", "lk", "--intrinsics", _intrinsics(clip), "-q"]) == 0
    for rel in OUTPUTS:
        assert (out / rel).exists(), rel
    names = [f"img_{t:03d}.png" for t in range(T)]
    assert sorted(p.name for p in (out / "images").iterdir()) == names
    rec = pycolmap.Reconstruction(str(out / "sparse" / "0"))
    acc = pose_accuracy(rec, names, clip["cam_from_world"].astype(np.float64))
    assert acc["registered"] == f"{T}/{T}"
    assert acc["rel_rotation_deg_max"] < 1.0 and acc["rotation_deg_max"] < 1.0
    assert acc["center_rel_max"] < 0.05
    report = json.loads((out / "report.json").read_text())
    assert report["frames_total"] == T and report["frames_registered"] == rec.num_reg_images() == T
    assert report["points3d"] == rec.num_points3D() > 100
    assert 0 < report["mean_reprojection_error_px"] < 1.5 and report["mean_track_length"] > 3
    assert {"read", "queries", "track", "filter", "reconstruct", "export"} <= set(report["timings_s"])
    assert report["tracker"] == "lucas-kanade" and "no weights" in report["checkpoint"]
    assert report["tracker_choice"] == "--tracker lk requested"
    assert report["mapping"]["rotation_only_fit"]["residual_p90_px"] > 1
    # a small photo set gets both mappers' models and keeps the one that agrees better with its verified pairs
    m = report["mapping"]
    assert m["tried"] == ["incremental", "global"] and m["mapper"] in m["tried"]
    assert m["pair_disagreement_deg"][m["mapper"]] == min(m["pair_disagreement_deg"].values())
    assert report["camera"]["model"] == "PINHOLE"
    np.testing.assert_allclose(report["camera"]["params"][0], clip["intrinsics"][0, 0], rtol=1e-4)  # kept fixed
    tracks = Tracks.load(out / "tracks.npz")
    assert tracks.names() == names and tracks.num_frames == T
    assert "registered" in capsys.readouterr().out


def test_video_file_with_stride(video_file, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([str(video_file), "-o", str(out), "--tracker", "lk", "--stride", "2", "--max-side", "128", "-q"]) == 0
    assert "frame/s" not in capsys.readouterr().err  # -q: no progress bars (reading and tracking draw them otherwise)
    assert show_progress(True)  # ... for that call only: the bars are on again after it
    names = [f"frame_{t:06d}.png" for t in range(0, T, 2)]  # named after the original frame index
    assert sorted(p.name for p in (out / "images").iterdir()) == names
    assert cv2.imread(str(out / "images" / names[0])).shape == (128, 128, 3)
    report = json.loads((out / "report.json").read_text())
    assert report["frames_total"] == T // 2 and report["frames_registered"] >= T // 2 - 1
    assert report["model_size"] == [128, 128] and report["input_size"] == [SIZE, SIZE]
    rec = pycolmap.Reconstruction(str(out / "sparse" / "0"))
    assert rec.cameras[1].width == 128 and {im.name for im in rec.images.values()} <= set(names)


def test_masks_restrict_queries(clip, image_dir, tmp_path):
    masks = tmp_path / "masks"
    masks.mkdir()
    keep = np.zeros((SIZE, SIZE), np.uint8)
    keep[:, : SIZE // 2] = 255  # left half only
    for t in range(T):
        cv2.imwrite(str(masks / f"img_{t:03d}.png"), keep)
    out = tmp_path / "out"
    assert main([str(image_dir), "-o", str(out), "--tracker", "lk", "--mask-dir", str(masks), "--no-video", "--max-frames", "10", "-q"]) == 0
    tracks = Tracks.load(out / "tracks.npz")
    q = tracks.xy[tracks.query_frame, np.arange(tracks.num_tracks)]
    assert tracks.num_tracks > 50 and (q[:, 0] <= SIZE / 2).all()
    assert (tracks.xy[..., 0][tracks.visible] <= SIZE / 2 + 0.5).all()  # observations on excluded pixels dropped


def _bad_inputs(tmp_path, image_dir, video_file, clip):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    one = tmp_path / "one.mp4"
    write_video(one, clip["video"][:1])
    broken = tmp_path / "broken"
    broken.mkdir()
    for t in range(4):
        cv2.imwrite(str(broken / f"{t}.png"), clip["video"][t])
    (broken / "2.png").write_bytes(b"not a png")
    no_masks = tmp_path / "masks_missing"
    no_masks.mkdir()
    cv2.imwrite(str(no_masks / "img_000.png"), np.full((SIZE, SIZE), 255, np.uint8))
    small_masks = tmp_path / "masks_small"
    small_masks.mkdir()
    for t in range(T):
        cv2.imwrite(str(small_masks / f"img_{t:03d}.png"), np.full((SIZE // 2, SIZE // 2), 255, np.uint8))
    return {
        "missing": ([str(tmp_path / "nope.mp4")], "no such file"),
        "empty": ([str(empty)], "empty video"),
        "corrupt": ([str(corrupt)], "cannot"),
        "one_frame": ([str(one)], "1 frame"),
        "unreadable_image": ([str(broken)], "cannot read image"),
        "masks_missing": ([str(image_dir), "--mask-dir", str(no_masks)], "no mask for 15 of 16"),
        "masks_wrong_size": ([str(image_dir), "--mask-dir", str(small_masks)], "96x96"),
        "checkpoint_missing": ([str(image_dir), "--tracker", "cotracker3", "--checkpoint", str(tmp_path / "none.pth")], "checkpoint not found"),
        "no_weights": ([str(image_dir), "--tracker", "cotracker3"], "no CoTracker3 offline weights found"),
    }


def test_bad_inputs_fail_with_one_line_and_leave_nothing(clip, image_dir, video_file, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # no official weights in the hub cache
    monkeypatch.setenv("SFM_TRACKS_NO_DOWNLOAD", "1")
    monkeypatch.setattr("cotracker3.checkpoint.EMBEDDED_DIR", tmp_path / "no_shipped_weights")
    for name, (argv, needle) in _bad_inputs(tmp_path, image_dir, video_file, clip).items():
        out = tmp_path / f"out_{name}"
        code = main(argv + ["-o", str(out), "--tracker", "lk", "-q"] if "--tracker" not in argv else argv + ["-o", str(out), "-q"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2, name
        assert err and err[-1].startswith("error: ") and needle in err[-1], (name, err)
        assert not out.exists(), name
        _no_model(out)


def test_subprocess_exit_code_and_message(tmp_path):
    out = tmp_path / "out"
    res = subprocess.run([sys.executable, str(ROOT / "pipelines" / "reconstruct.py"), str(tmp_path / "missing.mp4"), "-o", str(out),
                          "--tracker", "lk"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [f"error: no such file or folder: {tmp_path / 'missing.mp4'}"]
    assert not out.exists()


def test_cotracker_route_with_explicit_checkpoint(clip, image_dir, tmp_path, capsys):
    """A tiny random-weight CoTracker3 loads through --checkpoint and tracks through windows; random
    weights see nothing beyond the query frames, so mapping must refuse cleanly (nothing written)."""
    cfg = dict(latent_dim=32, hidden_size=48, corr_hidden=32, num_virtual_tracks=4, space_depth=1, model_resolution=(64, 64), window_len=8)
    torch.manual_seed(0)
    ckpt = tmp_path / "tiny.safetensors"
    save_weights(CoTrackerThreeOffline(**cfg), ckpt, config=cfg)
    provider = make_provider("cotracker3", str(ckpt))
    assert str(ckpt) in provider.checkpoint_source
    frames = clip["video"][:12]
    queries = np.array([[0, 40.0, 50.0], [6, 100.0, 90.0], [11, 150.0, 120.0]], np.float32)
    tracks = track(provider, frames, queries, {"window": 8, "overlap": 4, "max_queries": 2})  # 2 windows, 2 chunks
    assert tracks.xy.shape == (12, 3, 2) and np.isfinite(tracks.xy).all() and tracks.confidence is not None
    np.testing.assert_allclose(tracks.xy[[0, 6, 11], [0, 1, 2]], queries[:, 1:], atol=1e-3)
    out = tmp_path / "out"
    code = main([str(image_dir), "-o", str(out), "--tracker", "cotracker3", "--checkpoint", str(ckpt), "--max-frames", "8",
                 "--max-side", "96", "--points-per-frame", "16", "--matches", "off", "-q"])  # tracks only: SIFT could map these photos
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("error: ") and "track" in err[-1]
    _no_model(out)


def test_demo_runs_and_matches_its_ground_truth(tmp_path, capsys, monkeypatch):
    """The README's main command: the demo picks the best tracker it has and recovers the true cameras."""
    monkeypatch.setenv("SFM_TRACKS_NO_DOWNLOAD", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no official weights: the small ones are skipped
    assert main(["--demo", "-o", str(tmp_path / "demo"), "-q", "--no-video"]) == 0
    out = capsys.readouterr().out
    assert "tracker lucas-kanade" in out and "auto: Lucas-Kanade" in out and "24/24 registered" in out
    rot = float(out.split("rotation error after alignment mean ")[1].split(" deg")[0])
    assert rot < 0.5
