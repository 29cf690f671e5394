"""Degenerate camera motion: a camera that only turns is refused with the cause named, never given a translation."""
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipelines.reconstruct import main
from sfm_tracks import ReconstructionError, reconstruct
from sfm_tracks.colmap import database as dbm
from sfm_tracks.colmap.cameras import CameraSpec, camera_spec, make_camera
from sfm_tracks.colmap.degeneracy import check_not_pure_rotation, fit_rotation, forward_motion_deg, verified_matches
from sfm_tracks.pipeline import DEFAULT_CONF, camera_report, query_points
from sfm_tracks.tracking.providers import LucasKanadeProvider
from sfm_tracks.testing import synthetic_scene
from tests.synthetic import rotating_video


@pytest.fixture(scope="module")
def turning():
    frames, focal = rotating_video(T=16, size=160)
    tracks = LucasKanadeProvider()(frames, query_points(frames, DEFAULT_CONF["queries"]))
    return frames, focal, tracks


def _verified_db(tracks, work: Path) -> Path:
    db = work / "database.db"
    dbm.write_database(db, tracks, make_camera(camera_spec(None), tracks.image_size), dbm.pair_schedule(tracks.num_frames), dbm.usable(tracks))
    dbm.verify(db, num_threads=1)
    return db


def test_rotation_model_finds_the_focal_of_a_turning_camera(turning, tmp_path):
    _, focal, tracks = turning
    fit = fit_rotation(verified_matches(_verified_db(tracks, tmp_path)), tracks.image_size)
    assert abs(fit.focal - focal) < 0.03 * focal and fit.parallax_px < 0.3


def test_parallax_is_not_mistaken_for_rotation(tmp_path):
    scene = synthetic_scene(num_frames=12, num_tracks=200, outlier_fraction=0.1, motion="orbit")
    fit = check_not_pure_rotation(_verified_db(scene.tracks, tmp_path), scene.tracks.image_size)  # does not raise
    assert fit.parallax_px > 3 * max(fit.noise_px, 0.75)


def test_turning_video_refused_with_the_cause(turning):
    with pytest.raises(ReconstructionError, match=r"^pure rotation .*no baseline.*cannot reconstruct 3D"):
        reconstruct(turning[2])


def test_noisy_rotation_refused_whatever_the_pair_configurations():
    scene = synthetic_scene(num_frames=12, num_tracks=200, noise_px=1.0, outlier_fraction=0.05, motion="rotation", seed=2)
    with pytest.raises(ReconstructionError, match="pure rotation"):
        reconstruct(scene.tracks)


def test_cli_exits_2_with_one_line(turning, tmp_path, capsys):
    frames, images = turning[0], tmp_path / "images"
    images.mkdir()
    for t, f in enumerate(frames):
        cv2.imwrite(str(images / f"img_{t:03d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    out = tmp_path / "out"
    assert main([str(images), "-o", str(out), "--tracker", "lk", "--no-video", "-q"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line.lower()]  # progress bars aside
    assert len(err) == 1 and err[0].startswith("error: pure rotation") and "cannot reconstruct 3D" in err[0]
    assert not out.exists()


def test_wide_baselines_everywhere_are_not_mistaken_for_rotation(monkeypatch, tmp_path):
    """A photo set around an object has large misfits on its closest pairs too (kitchen: 39 px, 68 px at the
    90th percentile, ratio 1.7): a misfit above the verification threshold is parallax whatever the ratio."""
    import sfm_tracks.colmap.degeneracy as deg

    residuals = np.array([38.0, 40.0, 45.0, 60.0, 70.0])
    fit = deg.RotationFit(300.0, residuals, np.array([1, 1, 2, 3, 4]))
    monkeypatch.setattr(deg, "verified_matches", lambda db: [None] * len(residuals))
    monkeypatch.setattr(deg, "fit_rotation", lambda pairs, size: fit)
    assert check_not_pure_rotation(tmp_path / "db", (100, 100)) is fit
    small = deg.RotationFit(300.0, residuals / 40, fit.stride)  # the same ratios at 1-2 px: no baseline
    monkeypatch.setattr(deg, "fit_rotation", lambda pairs, size: small)
    with pytest.raises(ReconstructionError, match="pure rotation"):
        check_not_pure_rotation(tmp_path / "db", (100, 100))


@pytest.mark.parametrize("motion", ["forward", "orbit"])
def test_uncalibrated_forward_motion_is_flagged_in_the_camera_report(motion):
    """Forward motion cannot correct the assumed principal point: the report says so unless intrinsics were given."""
    scene = synthetic_scene(num_frames=12, num_tracks=300, outlier_fraction=0.0, noise_px=0.5, motion=motion)
    rec = reconstruct(scene.tracks, camera=CameraSpec(model="PINHOLE", params=scene.colmap_params), cam_from_world=scene.cam_from_world)
    angle = forward_motion_deg(rec)
    assert (angle < 10) if motion == "forward" else (angle > 80)
    assert ("warning" in camera_report(rec)) == (motion == "forward")
    assert "warning" not in camera_report(rec, calibrated=True)
