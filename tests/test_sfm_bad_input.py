"""Degenerate input gives a ReconstructionError naming the problem, never a crash inside pycolmap."""
import numpy as np
import pytest

from sfm_tracks import ReconstructionError, Tracks, geometric_filter, reconstruct, reprojection_errors
from sfm_tracks.testing import synthetic_scene


def _tracks(T, N, visible=True):
    return Tracks(xy=np.zeros((T, N, 2)), visible=np.full((T, N), visible), image_size=(48, 64))


def test_empty_tracks():
    with pytest.raises(ReconstructionError, match="no tracks"):
        reconstruct(_tracks(5, 0))


def test_too_few_frames():
    with pytest.raises(ReconstructionError, match="at least 2 frames"):
        reconstruct(_tracks(1, 50))
    scene = synthetic_scene(num_frames=10, num_tracks=100)
    with pytest.raises(ReconstructionError, match="at least 2 frames"):
        reconstruct(scene.tracks.select(frames=[3]))


def test_all_invisible():
    with pytest.raises(ReconstructionError, match="visible tracks"):
        reconstruct(_tracks(6, 40, visible=False))


def test_nan_coordinates():
    scene = synthetic_scene(num_frames=10, num_tracks=100)
    assert np.isnan(scene.tracks.xy[~scene.tracks.visible]).all()  # NaN where invisible is fine (used below)
    tracks = scene.tracks.select()
    tracks.xy[4, 7] = np.nan  # edited after validation, while marked visible
    tracks.visible[4, 7] = True
    with pytest.raises(ReconstructionError, match="NaN"):
        reconstruct(tracks)


def test_some_frames_all_invisible_are_left_unregistered():
    scene = synthetic_scene(num_frames=14, num_tracks=300, outlier_fraction=0.0, seed=2)
    tracks = scene.tracks.select()
    tracks.visible[[5, 6]] = False
    tracks.xy[8, :5] = [[-40.0, 10.0], [1e6, 3.0], [5.0, 480.5], [-0.6, 0.0], [639.6, 20.0]]  # visible, outside the image
    tracks.visible[8, :5] = True
    rec = reconstruct(tracks)
    assert rec.num_reg_images() == 12
    err = reprojection_errors(rec, tracks)
    assert np.isnan(err[[5, 6]]).all() and np.isfinite(err[4]).sum() > 200
    labels = geometric_filter(rec, tracks)
    assert (labels[[5, 6]] == 0).all() and (labels[4] == 1).mean() > 0.8
    assert np.isnan(err[8, :5]).all() and (labels[8, :5] == 0).all()  # outside the image: not measured


def test_duplicate_image_names():
    scene = synthetic_scene(num_frames=4, num_tracks=50)
    t = scene.tracks
    dup = type(t)(xy=t.xy, visible=t.visible, image_size=t.image_size, image_names=["a.png", "b.png", "a.png", "c.png"])
    with pytest.raises(ReconstructionError, match="unique"):
        reconstruct(dup)


@pytest.mark.parametrize("motion", ["rotation", "static"])
def test_too_little_parallax(motion):
    scene = synthetic_scene(num_frames=10, num_tracks=200, outlier_fraction=0.0, motion=motion)
    with pytest.raises(ReconstructionError, match="parallax"):
        reconstruct(scene.tracks)


def test_bad_options_and_poses():
    scene = synthetic_scene(num_frames=6, num_tracks=80)
    with pytest.raises(TypeError, match="unknown reconstruct"):
        reconstruct(scene.tracks, strides=3)
    with pytest.raises(ValueError, match="model"):
        reconstruct(scene.tracks, camera="FISHEYE_X")
    with pytest.raises(ValueError, match="takes 4 parameters"):
        reconstruct(scene.tracks, camera={"model": "PINHOLE", "params": [500.0, 320.0, 240.0]})
    with pytest.raises(ReconstructionError, match="poses for 6 frames"):
        reconstruct(scene.tracks, cam_from_world=scene.cam_from_world[:4])
    none = [None] * 6
    none[0] = scene.cam_from_world[0]
    with pytest.raises(ReconstructionError, match="at least 2 frames"):
        reconstruct(scene.tracks, cam_from_world=none)
