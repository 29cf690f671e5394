"""What Gaussian-splatting and NeRF trainers read from a run: OUT/undistorted/ (3DGS loader rules, checked with
our own COLMAP binary reader), masks, mask_path in both transforms.json, and the folder each trainer takes."""
import json

import cv2
import numpy as np
import pytest

from colmap_binary import check_3dgs_loader_rules, read_cameras
from cotracker3.data.synthetic import generate_clip
from pipelines.reconstruct import main
from sfm_tracks import write_video
from sfm_tracks.testing import distort_frames

T, SIZE, K1 = 16, 192, -0.15
FAST = ["--tracker", "lk", "--no-video", "-q"]


@pytest.fixture(scope="module")
def distorted_video(tmp_path_factory):
    clip = generate_clip(0, num_frames=T, height=SIZE, width=SIZE, num_tracks=8, dynamic=False, camera_mode="orbit")
    path = tmp_path_factory.mktemp("video") / "lens.mp4"
    write_video(path, distort_frames(clip["video"], float(clip["intrinsics"][0, 0]), K1), fps=10)
    return path


@pytest.fixture(scope="module")
def default_run(distorted_video, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "out"
    assert main([str(distorted_video), "-o", str(out)] + FAST) == 0
    return out


def test_default_output_has_an_undistorted_folder_3dgs_loads(default_run, capsys):
    out = default_run
    report = json.loads((out / "report.json").read_text())
    assert report["camera"]["model"] == "SIMPLE_RADIAL" and report["camera"]["params"][3] < -0.05  # the lens was found
    model = check_3dgs_loader_rules(out / "undistorted")
    assert len(model["images"]) == report["frames_registered"]
    assert read_cameras(out / "sparse" / "0" / "cameras.bin")[1]["model"] == "SIMPLE_RADIAL"  # OUT keeps the exact model
    # barrel distortion: the crop to no blank pixels keeps the focal length; the undistorted picture is larger
    cam = model["cameras"][1]
    assert cam["params"][0] == pytest.approx(report["camera"]["params"][0])
    assert cam["width"] > SIZE and cam["height"] > SIZE
    assert report["undistorted"]["size_after"] == [cam["width"], cam["height"]]
    ns = json.loads((out / "undistorted" / "transforms.json").read_text())
    assert ns["camera_model"] == "PINHOLE" and (ns["w"], ns["h"]) == (cam["width"], cam["height"]) and ns["k1"] == 0
    assert all((out / "undistorted" / f["file_path"]).is_file() for f in ns["frames"])
    assert (out / "undistorted" / ns["ply_file_path"]).is_file()
    distorted = json.loads((out / "transforms.json").read_text())
    assert distorted["camera_model"] == "OPENCV" and distorted["k1"] < -0.05
    assert report["trainers"] == {"3dgs": str(out / "undistorted"), "nerfstudio": str(out), "colmap": str(out / "sparse" / "0")}
    assert report["timings_s"]["undistort"] > 0


def test_masks_are_warped_and_named_in_both_transforms(distorted_video, tmp_path):
    masks = tmp_path / "masks"
    masks.mkdir()
    for t in range(T):  # keep all but a block at the top-left corner
        m = np.full((SIZE, SIZE), 255, np.uint8)
        m[:48, :48] = 0
        cv2.imwrite(str(masks / f"frame_{t:06d}.png"), m)
    out = tmp_path / "out"
    assert main([str(distorted_video), "-o", str(out), "--mask-dir", str(masks)] + FAST) == 0
    for folder in (out, out / "undistorted"):
        ns = json.loads((folder / "transforms.json").read_text())
        assert ns["frames"] and all("mask_path" in f for f in ns["frames"])
        for f in ns["frames"]:
            mask = cv2.imread(str(folder / f["mask_path"]), cv2.IMREAD_GRAYSCALE)
            image = cv2.imread(str(folder / f["file_path"]))
            assert mask.shape == image.shape[:2] and set(np.unique(mask)) == {0, 255}
    m = cv2.imread(str(out / "masks" / "frame_000000.png"), cv2.IMREAD_GRAYSCALE)
    u = cv2.imread(str(out / "undistorted" / "masks" / "frame_000000.png"), cv2.IMREAD_GRAYSCALE)
    assert m[:48, :48].max() == 0 and m[48:, 48:].min() == 255
    # the warp moves the block and resizes the mask with its image, but the block stays at the corner
    assert u[:20, :20].max() == 0 and u[-40:, -40:].min() == 255 and not np.array_equal(u.shape, m.shape)


def test_pinhole_model_needs_no_copy_and_no_undistort_skips(distorted_video, tmp_path, capsys):
    out = tmp_path / "pinhole"
    assert main([str(distorted_video), "-o", str(out), "--camera-model", "PINHOLE"] + FAST) == 0
    line = capsys.readouterr().out
    assert not (out / "undistorted").exists()
    assert f"3DGS -s {out} (the model is already pinhole" in line and f"nerfstudio --data {out}" in line
    check_3dgs_loader_rules(out)
    skipped = tmp_path / "skipped"
    assert main([str(distorted_video), "-o", str(skipped), "--no-undistort"] + FAST) == 0
    line = capsys.readouterr().out
    assert not (skipped / "undistorted").exists() and "3DGS: none (--no-undistort" in line
    assert json.loads((skipped / "report.json").read_text())["trainers"]["3dgs"] is None


def test_maps_give_the_pixels_of_pycolmaps_undistorter(default_run):
    import pycolmap

    from sfm_tracks.colmap.undistort import undistortion_maps, warp

    rec = pycolmap.Reconstruction(str(default_run / "sparse" / "0"))
    cam = rec.cameras[1]
    options = pycolmap.UndistortCameraOptions()
    image = cv2.imread(str(default_run / "images" / "frame_000003.png"), cv2.IMREAD_UNCHANGED)
    theirs, their_cam = pycolmap.undistort_image(options, pycolmap.Bitmap.from_array(image), cam)
    pinhole, maps = undistortion_maps(cam, options)
    ours = warp(image, maps)
    assert (pinhole.width, pinhole.height) == (their_cam.width, their_cam.height) and np.allclose(pinhole.params, their_cam.params)
    diff = np.abs(ours.astype(int) - np.asarray(theirs.to_array()).astype(int).reshape(ours.shape))
    assert diff.max() <= 1 and diff.mean() < 0.01
    written = cv2.imread(str(default_run / "undistorted" / "images" / "frame_000003.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(written, ours)
