"""--frames / --fps: the sharpest frame of each slot, near-duplicates skipped, deterministic, and bad input in one line."""
import json

import cv2
import numpy as np
import pytest

from cotracker3.data.synthetic import generate_clip
from pipelines.reconstruct import main, pose_accuracy
from sfm_tracks import Tracks, write_video
from sfm_tracks.selection import select_frames, sharpness, slot_ids
from sfm_tracks.testing import blur_every

FAST = ["--tracker", "lk", "--no-video", "-q"]


@pytest.fixture(scope="module")
def blurred_video(tmp_path_factory):
    """24 frames of an orbit at 256 px (the demo's scene), every fifth frame (2, 7, ...) blurred."""
    clip = generate_clip(0, num_frames=24, height=256, width=256, num_tracks=8, dynamic=False, camera_mode="orbit")
    frames, blurred = blur_every(clip["video"], every=5, phase=2, sigma=2.5)
    path = tmp_path_factory.mktemp("video") / "blur.mp4"
    write_video(path, frames, fps=10)
    return path, blurred, clip["cam_from_world"].astype(np.float64)


def _accuracy(out, names, gt):
    from pycolmap import Reconstruction

    index = [int(n[6:12]) for n in names]
    return pose_accuracy(Reconstruction(str(out / "sparse" / "0")), names, gt[index])


def test_frames_keeps_sharp_frames_and_poses_are_no_worse(blurred_video, tmp_path):
    path, blurred, gt = blurred_video
    sel, every = tmp_path / "sel", tmp_path / "all"
    assert main([str(path), "-o", str(sel), "--frames", "8"] + FAST) == 0
    assert main([str(path), "-o", str(every)] + FAST) == 0
    fs = json.loads((sel / "report.json").read_text())["frame_selection"]
    names = [f"frame_{t:06d}.png" for t in range(24)]
    kept = fs["kept"]
    slots = slot_ids(24, frames=8)
    for n in kept:  # no blurred frame kept while a sharp one shares its slot
        t = names.index(n)
        assert not (blurred[t] and (~blurred[slots == slots[t]]).any()), n
    assert set(kept) | set(fs["dropped"]) == set(names) and not set(kept) & set(fs["dropped"])
    assert all("less sharp than" in fs["dropped"][names[t]] for t in np.flatnonzero(blurred))
    assert sorted(p.name for p in (sel / "images").iterdir()) == kept
    # the same cameras, judged in both models: selection is at least as accurate (blur makes a tracker drift)
    a_sel, a_all = _accuracy(sel, kept, gt), _accuracy(every, kept, gt)
    assert a_sel["registered"] == f"{len(kept)}/{len(kept)}"
    assert a_sel["rotation_deg_mean"] <= a_all["rotation_deg_mean"], (a_sel, a_all)
    assert a_sel["center_rel_mean"] <= a_all["center_rel_mean"], (a_sel, a_all)


def test_selection_is_deterministic_and_skips_near_duplicates():
    T, N = 12, 50
    rng = np.random.default_rng(0)
    xy = np.repeat(rng.uniform(10, 90, (1, N, 2)), T, 0)
    xy[6:] += 20.0  # the camera stands still for frames 0-5, then moves once
    tracks = Tracks(xy=xy, visible=np.ones((T, N), bool), image_size=(100, 100), image_names=[f"f{t}" for t in range(T)])
    scores = np.array([5, 9, 9, 1, 7, 2, 3, 8, 1, 1, 6, 4], float)
    slots = slot_ids(T, frames=4)  # [0-2], [3-5], [6-8], [9-11]
    kept, dropped = select_frames(scores, slots, tracks, min_motion=0.05)
    assert kept.tolist() == [1, 7]  # slot 0: ties go to the earlier frame; slot 3 is a near-duplicate of 7
    assert "near-duplicate of f1" in dropped[4] and "near-duplicate of f7" in dropped[10]
    assert "less sharp than f1" in dropped[2]
    again = select_frames(scores, slots, tracks, min_motion=0.05)
    assert again[0].tolist() == kept.tolist() and again[1] == dropped


def test_sharpness_ranks_a_blurred_frame_below_its_source():
    frame = generate_clip(1, num_frames=2, height=128, width=160, num_tracks=8, dynamic=False)["video"][0]
    assert sharpness(cv2.GaussianBlur(frame, (0, 0), 2.0)) < 0.5 * sharpness(frame)
    assert slot_ids(30, fps=5, rate=30, stride=2).tolist() == np.repeat(np.arange(10), 3).tolist()  # 15 fps decoded: 2 s


def _one_line(capsys, argv, needle):
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and err[0].startswith("error: ") and needle in err[0], err


def test_bad_selection_options_are_one_line(blurred_video, tmp_path, capsys):
    path = str(blurred_video[0])
    out = tmp_path / "out"
    _one_line(capsys, [path, "-o", str(out), "--frames", "0"], "argument --frames: expected an integer >= 1")
    _one_line(capsys, [path, "-o", str(out), "--fps", "-2"], "argument --fps: expected a finite number > 0")
    _one_line(capsys, [path, "-o", str(out), "--frames", "5", "--fps", "2"], "not allowed with argument")
    folder = tmp_path / "images"
    folder.mkdir()
    assert main([str(folder), "-o", str(out), "--fps", "2"] + FAST) == 2
    assert "error: --fps needs a video file" in capsys.readouterr().err
    assert not out.exists()


def test_fps_above_the_video_rate_uses_every_frame_and_says_so(blurred_video, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([str(blurred_video[0]), "-o", str(out), "--fps", "25", "--max-frames", "10"] + FAST) == 0
    line = capsys.readouterr().out
    fs = json.loads((out / "report.json").read_text())["frame_selection"]
    assert fs["num_kept"] == fs["num_decoded"] == 10 and not fs["dropped"]
    assert "--fps 25 is at or above the video's 10 frames per second" in fs["rule"] and "every frame is used" in line
