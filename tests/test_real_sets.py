"""reconstruct.py with its defaults on real photo sets of the team's shared data (marker shared_data).

Guards what issue 11 fixed: a 360-degree photo set (kitchen) is not mistaken for pure rotation, and photos
of different sizes and cameras (british_museum) get one camera each; both register at least COLMAP's count
(BENCHMARKS.md, Reconstruct). Issue 22: the default output's splatting folder (OUT/undistorted, or OUT for a
pinhole model) passes the 3DGS loader's rules, read with our own COLMAP binary reader.
"""
import json

import pytest

from colmap_binary import check_3dgs_loader_rules
from pipelines.reconstruct import main

pytestmark = pytest.mark.shared_data


# kitchen: COLMAP SIFT exhaustive on the same 640 px frames registers 19/25 (measured 2026-12-04; 23/25 on the
# 1024 px frames of BENCHMARKS.md); with COLMAP's peak threshold (--features colmap) we register 19 too, with ours
# (0.003, --features accurate and fast) all 25.
@pytest.mark.parametrize("name, at_least, cameras", [("british_museum", 10, 10), ("statue", 9, 1), ("kitchen", 23, 1)])
def test_photo_set_registers_like_colmap(shared_data, tmp_path, name, at_least, cameras):
    out = tmp_path / name
    assert main([str(shared_data / "vggsfm_examples" / name / "images"), "-o", str(out), "--no-video", "-q", "--max-side", "640"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["frames_registered"] >= at_least and report["tracker"] == "lucas-kanade"
    assert report["matches"]["enabled"] and report["camera"].get("num_cameras", 1) == cameras
    assert report["trainers"]["3dgs"] is not None
    check_3dgs_loader_rules(out / "undistorted" if report["undistorted"]["written"] else out)


@pytest.mark.parametrize("name", ["apple", "teddy"])
def test_video_default_output_loads_in_3dgs(shared_data, tmp_path, name):
    out = tmp_path / name
    argv = [str(shared_data / "cotracker_videos" / f"{name}.mp4"), "-o", str(out), "--no-video", "-q", "--max-frames", "20", "--max-side", "512"]
    assert main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["undistorted"]["written"] and report["trainers"]["3dgs"] == str(out / "undistorted")
    check_3dgs_loader_rules(out / "undistorted")
