"""Image folders whose photos differ in size (and camera): a padded common canvas for tracking, one camera
per image for COLMAP, cropped images in the output; same-size input keeps one shared camera."""
import json

import cv2
import numpy as np
import pycolmap
import pytest

from pipelines.reconstruct import main
from sfm_tracks import Tracks
from sfm_tracks.colmap.cameras import CameraSpec, frame_cameras
from sfm_tracks.tracking.filters import off_padding
from sfm_tracks.inputs import exclude_padding, load_frames, load_masks
from sfm_tracks.colmap.metrics import relative_pose_errors
from sfm_tracks.outdir import InputError
from synthetic import orbit_poses, render_room, room_planes

# (H, W, focal) per photo as rendered; --max-side 256 scales the 240x320 and 320x240 ones by 0.8
PHOTOS = [(192, 256, 170.0), (240, 320, 260.0), (192, 256, 200.0), (320, 240, 300.0), (176, 240, 190.0),
          (192, 256, 170.0), (200, 256, 230.0), (240, 320, 280.0)]
MAX_SIDE = 256


def _scaled(h, w):
    s = min(1.0, MAX_SIDE / max(h, w))
    return round(h * s), round(w * s)


def _photo_folder(d, poses):
    d.mkdir()
    names = [f"img_{t:02d}.jpg" for t in range(len(poses))]
    rects = room_planes(seed=0)
    for t, (h, w, f) in enumerate(PHOTOS):
        K = np.array([[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1]])
        img = render_room(rects, poses[t:t + 1], K, h, w)[0]
        cv2.imwrite(str(d / names[t]), cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    return names


def test_canvas_padding_masks_and_cameras(tmp_path):
    frames = [np.full((40, 60, 3), 200, np.uint8), np.full((70, 50, 3), 100, np.uint8)]
    canvas, names, in_sizes, sizes, scores = load_frames((frames, ["a.png", "b.png"]), tmp_path, max_side=None)
    assert scores.shape == (2,) and (scores == 0).all()  # flat grey frames have no edges
    assert canvas.shape == (2, 70, 60, 3) and sizes.tolist() == [[40, 60], [70, 50]] == in_sizes.tolist()
    assert (canvas[0, :40, :60] == 200).all() and not canvas[0, 40:].any() and not canvas[1, :, 50:].any()
    masks = exclude_padding(None, sizes, (70, 60), tmp_path, margin=5)
    assert masks[0, :35, :55].all() and not masks[0, 35:].any() and not masks[0, :, 55:].any()
    assert masks[1, :65, :45].all() and not masks[1, :, 45:].any()
    tracks = Tracks(xy=np.array([[[10, 10], [56, 10], [10, 38]], [[10, 10], [56, 10], [46, 60]]], np.float32),
                    visible=np.ones((2, 3), bool), image_size=(70, 60))
    np.testing.assert_array_equal(off_padding(tracks, sizes, 5), [[True, False, False], [True, False, False]])
    same, _, _, same_sizes, _ = load_frames(([frames[0]] * 3, list("abc")), tmp_path, max_side=None)
    assert same.shape == (3, 40, 60, 3) and (same_sizes == [40, 60]).all()

    spec = CameraSpec()
    shared = frame_cameras(spec, (40, 60), 3, same_sizes)
    assert len({c.camera_id for c in shared}) == 1 and (shared[0].height, shared[0].width) == (40, 60)
    own = frame_cameras(spec, (70, 60), 2, sizes)
    assert [(c.camera_id, c.height, c.width) for c in own] == [(1, 40, 60), (2, 70, 50)]
    assert own[1].focal_length == pytest.approx(1.2 * 70) and own[1].principal_point_x == pytest.approx(25)
    with pytest.raises(ValueError, match="one camera"):
        frame_cameras(CameraSpec(model="SIMPLE_PINHOLE", params=[50.0, 30.0, 20.0]), (70, 60), 2, sizes)


def test_masks_of_mixed_sizes(tmp_path):
    d = tmp_path / "masks"
    d.mkdir()
    cv2.imwrite(str(d / "a.png.png"), np.full((80, 120), 255, np.uint8))  # input 80x120 -> 40x60 at tracking size
    cv2.imwrite(str(d / "b.png"), np.zeros((70, 50), np.uint8))
    in_sizes, sizes = np.array([[80, 120], [70, 50]]), np.array([[40, 60], [70, 50]])
    m = load_masks(d, ["a.png", "b.png"], in_sizes, sizes, (70, 60), tmp_path)
    assert m.shape == (2, 70, 60) and m[0, :40, :60].all() and not m[0, 40:].any() and not m[1].any()
    cv2.imwrite(str(d / "b.png"), np.zeros((50, 70), np.uint8))
    with pytest.raises(InputError, match="mask b.png is 70x50, its frame 50x70"):
        load_masks(d, ["a.png", "b.png"], in_sizes, sizes, (70, 60), tmp_path)


def test_intrinsics_are_refused_for_mixed_sizes(tmp_path, capsys):
    d = tmp_path / "photos"
    d.mkdir()
    rng = np.random.default_rng(0)
    for t, (h, w) in enumerate([(48, 64), (64, 48), (48, 64)]):
        cv2.imwrite(str(d / f"{t}.png"), rng.integers(0, 255, (h, w, 3), np.uint8))
    assert main([str(d), "-o", str(tmp_path / "out"), "--intrinsics", "50,32,24", "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: --intrinsics describe one camera") and "2 sizes" in err
    assert not (tmp_path / "out").exists()


def test_mixed_size_photos_get_one_camera_each(tmp_path, capsys):
    poses = orbit_poses(len(PHOTOS), 48.0)  # 6 degrees apart
    d = tmp_path / "photos"
    names = _photo_folder(d, poses)
    out = tmp_path / "out"
    assert main([str(d), "-o", str(out), "--tracker", "lk", "--max-side", str(MAX_SIDE), "--no-video", "-q"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["frames_registered"] == len(PHOTOS)
    expected = {n: _scaled(h, w) for n, (h, w, _) in zip(names, PHOTOS)}
    focal = {n: f * _scaled(h, w)[0] / h for n, (h, w, f) in zip(names, PHOTOS)}
    rec = pycolmap.Reconstruction(str(out / "sparse" / "0"))
    assert rec.num_cameras() == len(PHOTOS) and report["camera"]["num_cameras"] == len(PHOTOS)
    for im in rec.images.values():
        cam = rec.cameras[im.camera_id]
        assert (cam.height, cam.width) == expected[im.name]
        assert cam.focal_length == pytest.approx(focal[im.name], rel=0.05)  # each photo's own zoom (measured < 1 %)
        assert cv2.imread(str(out / "images" / im.name)).shape[:2] == expected[im.name]  # cropped, no padding
        assert report["camera"]["per_image"][im.name]["width"] == expected[im.name][1]
    frames = json.loads((out / "transforms.json").read_text())["frames"]
    assert {f["file_path"]: (f["h"], f["w"]) for f in frames} == {f"images/{n}": s for n, s in expected.items()}
    by = {im.name: im.cam_from_world().matrix() for im in rec.images.values() if im.has_pose}
    rel = relative_pose_errors(np.array([by[n] for n in names]), poses)
    assert np.median(rel["rotation_deg"]) < 1.0 and rel["rotation_deg"].max() < 3.0
    assert report["tracks"]["padding"] >= 0  # the padding filter ran
    capsys.readouterr()
