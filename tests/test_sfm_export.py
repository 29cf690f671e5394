"""Every written model reads back with the same cameras, poses and points."""
import json

import cv2
import numpy as np
import open3d as o3d
import pycolmap
import pytest

from sfm_tracks import Tracks, reconstruct
from sfm_tracks.colmap.export import export, read_transforms, write_model, write_transforms
from sfm_tracks.colmap.metrics import poses_by_frame
from sfm_tracks.outputs import in_threads, write_images
from sfm_tracks.testing import synthetic_scene


@pytest.fixture(scope="module")
def scene_rec():
    scene = synthetic_scene(num_frames=8, num_tracks=150, outlier_fraction=0.0, seed=5)
    cam = {"model": "SIMPLE_RADIAL", "params": [600.0, 320.0, 240.0, 0.01]}
    return scene, reconstruct(scene.tracks, camera=cam, cam_from_world=scene.cam_from_world)


def _same_model(a: pycolmap.Reconstruction, b: pycolmap.Reconstruction):
    assert sorted(a.cameras) == sorted(b.cameras)
    for cid in a.cameras:
        assert a.cameras[cid].model == b.cameras[cid].model
        np.testing.assert_allclose(a.cameras[cid].params, b.cameras[cid].params)
    assert sorted(a.reg_image_ids()) == sorted(b.reg_image_ids())
    for iid in a.reg_image_ids():
        np.testing.assert_allclose(a.images[iid].cam_from_world().matrix(), b.images[iid].cam_from_world().matrix(), atol=1e-12)
        assert a.images[iid].name == b.images[iid].name
    assert sorted(a.point3D_ids()) == sorted(b.point3D_ids())
    for pid in a.point3D_ids():
        np.testing.assert_allclose(a.points3D[pid].xyz, b.points3D[pid].xyz, atol=1e-9)
        assert len(a.points3D[pid].track.elements) == len(b.points3D[pid].track.elements)


def test_export_reads_back(tmp_path, scene_rec):
    scene, rec = scene_rec
    H, W = scene.tracks.image_size
    frames = np.zeros((8, H, W, 3), np.uint8)
    frames[..., 0] = 200  # red frames -> red points
    write_images(tmp_path / "images", frames, scene.tracks.names())
    paths = export(rec, tmp_path / "out", tracks=scene.tracks, image_dir=tmp_path / "images", text=True)
    model = tmp_path / "out" / "sparse" / "0"
    assert {"cameras.bin", "images.bin", "points3D.bin", "cameras.txt", "images.txt", "points3D.txt"} <= {p.name for p in model.iterdir()}
    back = pycolmap.Reconstruction(str(model))
    _same_model(rec, back)
    assert all((back.points3D[p].color == [200, 0, 0]).all() for p in back.point3D_ids())
    txt = pycolmap.Reconstruction()
    txt.read_text(str(model))
    _same_model(rec, txt)

    pcd = o3d.io.read_point_cloud(str(paths["ply"]))
    xyz = np.array([rec.points3D[p].xyz for p in sorted(rec.point3D_ids())])
    order = lambda a: a[np.lexsort(a.T)]  # noqa: E731  (COLMAP writes the points in its own order)
    np.testing.assert_allclose(order(np.asarray(pcd.points)), order(xyz), rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(np.asarray(pcd.colors), np.tile([200 / 255, 0, 0], (len(xyz), 1)), atol=1e-3)

    intr, poses = read_transforms(paths["transforms"])
    assert intr["camera_model"] == "OPENCV" and (intr["w"], intr["h"]) == (W, H)
    assert (intr["fl_x"], intr["fl_y"], intr["cx"], intr["cy"], intr["k1"]) == pytest.approx((600, 600, 320, 240, 0.01))
    est = poses_by_frame(rec, scene.tracks)
    for t, name in enumerate(scene.tracks.names()):
        np.testing.assert_allclose(poses[f"images/{name}"], est[t], atol=1e-9)
    # OpenGL axes: the camera looks down its -z axis, so the scene centre is in front of -z
    c2w = np.array(json.loads(paths["transforms"].read_text())["frames"][0]["transform_matrix"])
    assert (c2w[:3, :3] @ [0, 0, -1]) @ (np.zeros(3) - c2w[:3, 3]) > 0

    back = Tracks.load(paths["tracks"])
    np.testing.assert_array_equal(back.visible, scene.tracks.visible)
    np.testing.assert_array_equal(np.isnan(back.xy), np.isnan(scene.tracks.xy))


def test_grey_without_frames_and_overwrite(tmp_path, scene_rec):
    _, rec = scene_rec
    export(rec, tmp_path)
    first = pycolmap.Reconstruction(str(tmp_path / "sparse" / "0"))
    smaller = pycolmap.Reconstruction(rec)
    for pid in list(smaller.point3D_ids())[:10]:
        smaller.delete_point3D(pid)
    paths = export(smaller, tmp_path)  # replaces the earlier model as a whole
    again = pycolmap.Reconstruction(str(tmp_path / "sparse" / "0"))
    assert again.num_points3D() == first.num_points3D() - 10
    assert not [p for p in tmp_path.rglob("*") if ".tmp-" in p.name or ".old-" in p.name]
    colors = np.asarray(o3d.io.read_point_cloud(str(paths["ply"])).colors)
    np.testing.assert_allclose(colors, 128 / 255, atol=1e-3)


@pytest.mark.parametrize("model,params", [("SIMPLE_PINHOLE", [500, 30, 20]), ("PINHOLE", [500, 510, 30, 20]),
                                          ("OPENCV", [500, 510, 30, 20, 0.1, -0.05, 0.001, 0.002])])
def test_transforms_intrinsics(tmp_path, model, params):
    rec = pycolmap.Reconstruction()
    rec.add_camera_with_trivial_rig(pycolmap.Camera(model=model, width=64, height=48, params=params, camera_id=1))
    rec.add_image_with_trivial_frame(pycolmap.Image(name="a.png", camera_id=1, image_id=1), pycolmap.Rigid3d())
    intr, poses = read_transforms(write_transforms(rec, tmp_path / "t.json", image_dir=""))
    got = [intr[k] for k in ("fl_x", "fl_y", "cx", "cy", "k1", "k2", "p1", "p2")]
    expect = {"SIMPLE_PINHOLE": [500, 500, 30, 20, 0, 0, 0, 0], "PINHOLE": params + [0] * 4, "OPENCV": params}[model]
    assert got == pytest.approx(expect)
    np.testing.assert_allclose(poses["a.png"], np.eye(4)[:3], atol=1e-12)
    write_model(rec, tmp_path / "deep" / "sparse" / "0")  # parents are created
    assert pycolmap.Reconstruction(str(tmp_path / "deep" / "sparse" / "0")).num_images() == 1


def test_threaded_image_writer_keeps_names_pixels_and_errors(tmp_path):
    """write_images runs on several threads: each frame must land under its own name, lossless, and a failing
    item must raise instead of being dropped."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (9, 24, 32, 3), dtype=np.uint8)
    names = [f"f{t:02d}.png" for t in range(9)][::-1]  # names not in frame order
    write_images(tmp_path, frames, names)
    for t, name in enumerate(names):
        np.testing.assert_array_equal(cv2.imread(str(tmp_path / name))[..., ::-1], frames[t])
    assert in_threads(lambda x: x * x, range(50), "squares") == [x * x for x in range(50)]

    def fail_on_7(x):
        if x == 7:
            raise OSError("cannot write 7")
        return x

    with pytest.raises(OSError, match="cannot write 7"):
        in_threads(fail_on_7, range(20), "fails")
