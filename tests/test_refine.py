"""tracking/refine.py: refinement lowers pixel and pose error, flags what it cannot refine, and is one step
that every provider's tracks go through (pipeline and pseudo-labels)."""
import cv2
import numpy as np
import pytest

from cotracker3.data.synthetic import generate_clip
from sfm_tracks import Tracks
from sfm_tracks.colmap.cameras import CameraSpec
from sfm_tracks.colmap.mapping import reconstruct
from sfm_tracks.colmap.metrics import aligned_pose_errors
from sfm_tracks.tracking import refine as refine_module
from sfm_tracks.tracking.affine import affine_align, patch_grid, prepare, sample
from sfm_tracks.tracking.providers import LucasKanadeProvider
from sfm_tracks.tracking.refine import LOW_TEXTURE, REFERENCE, REFINED, refine_tracks
from tests.synthetic import TranslationProvider, gt_positions, textured_video, translating_video

T, H, W = 16, 192, 256


@pytest.fixture(scope="module")
def clip():
    return generate_clip(3, num_frames=T, height=H, width=W, num_tracks=400, dynamic=False, camera_mode="orbit")


def _noisy_tracks(clip, sigma=1.0, seed=0):
    """The exact tracks with Gaussian noise on every observation but the query: a coarse tracker."""
    qf, n = clip["query_frame"], np.arange(clip["tracks"].shape[1])
    noise = np.random.default_rng(seed).normal(0, sigma, clip["tracks"].shape).astype(np.float32)
    noise[qf, n] = 0
    return Tracks(clip["tracks"] + noise, clip["visibility"], (H, W), query_frame=qf)


def _rotation_error(tracks, clip) -> float:
    K = clip["intrinsics"]
    rec = reconstruct(tracks, camera=CameraSpec("PINHOLE", [K[0, 0], K[1, 1], K[0, 2] + 0.5, K[1, 2] + 0.5]))
    by_name = {im.name: im.cam_from_world().matrix() for im in rec.images.values() if im.has_pose}
    est = np.array([by_name.get(name, np.full((3, 4), np.nan)) for name in tracks.names()])
    err = aligned_pose_errors(est, clip["cam_from_world"].astype(np.float64))
    assert err["num_registered"] == T
    return float(err["rotation_deg"].mean())


def test_refinement_lowers_pixel_and_pose_error(clip):
    noisy = _noisy_tracks(clip)
    ref = refine_tracks(clip["video"], noisy)
    kept = ref.tracks.visible & (ref.status == REFINED)
    assert kept.sum() > 0.3 * (noisy.visible & (ref.status != REFERENCE)).sum()
    assert (ref.tracks.visible[noisy.visible] == np.isin(ref.status[noisy.visible], (REFINED, REFERENCE, LOW_TEXTURE))).all()
    before = np.linalg.norm(noisy.xy - clip["tracks"], axis=-1)[kept]
    after = np.linalg.norm(ref.tracks.xy - clip["tracks"], axis=-1)[kept]
    assert after.mean() < 0.5 * before.mean(), (before.mean(), after.mean())
    # same observations in both reconstructions: only the positions differ
    same = Tracks(noisy.xy, ref.tracks.visible, (H, W), query_frame=noisy.query_frame)
    assert _rotation_error(ref.tracks, clip) < 0.8 * _rotation_error(same, clip)


def test_templates_checked_against_the_query_lower_the_error_far_from_it():
    """A template moves only to a position re-aligned to the query template, so template updates do not add up
    their alignment errors: observations past the first update (forward motion, the patches grow) end closer."""
    T2 = 32
    clip = generate_clip(1, num_frames=T2, height=H, width=W, num_tracks=400, dynamic=False, camera_mode="forward")
    qf, n = clip["query_frame"], np.arange(400)
    noise = np.random.default_rng(0).normal(0, 0.5, clip["tracks"].shape).astype(np.float32)
    noise[qf, n] = 0
    tracks = Tracks(clip["tracks"] + noise, clip["visibility"], (H, W), query_frame=qf)
    chained, checked = (refine_tracks(clip["video"], tracks, {"query_check": c}) for c in (False, True))
    far = np.abs(np.arange(T2)[:, None] - qf[None]) > refine_module.DEFAULT_CONF["update_every"]
    both = (chained.status == REFINED) & (checked.status == REFINED) & far
    assert both.sum() > 1000
    err = [np.linalg.norm(r.tracks.xy - clip["tracks"], axis=-1)[both] for r in (chained, checked)]
    assert err[1].mean() < err[0].mean() and np.median(err[1]) < np.median(err[0]), [e.mean() for e in err]


def test_textureless_observation_is_left_unrefined_and_flagged():
    frames = translating_video(T=6, H=80, W=120, velocity=(1.0, 0.5), seed=1)
    frames[:, 10:50, 60:110] = 128  # a flat grey block (no texture at all)
    queries = np.array([[0, 85.0, 30.0], [0, 30.0, 40.0]], np.float32)  # on the block / on texture
    exact = gt_positions(queries, 6, (1.0, 0.5))
    off = exact.copy()
    off[1:] += 0.7  # the tracker is 1 px off after the query frame
    tracks = Tracks(off, np.ones((6, 2), bool), (80, 120), query_frame=np.zeros(2, np.int64))
    ref = refine_tracks(frames, tracks)
    assert (ref.status[1:, 0] == LOW_TEXTURE).all() and ref.tracks.visible[:, 0].all()  # flagged, kept as given
    np.testing.assert_array_equal(ref.tracks.xy[:, 0], off[:, 0])  # not moved
    hidden = refine_tracks(frames, tracks, {"hide_low_texture": True})
    assert not hidden.tracks.visible[1:, 0].any() and hidden.tracks.visible[:, 1].all()
    assert ref.stats()["unreliable"]["low_texture"] == 5
    assert (ref.status[1:, 1] == REFINED).all()
    assert np.abs(ref.tracks.xy[1:, 1] - exact[1:, 1]).max() < 0.2


def test_low_texture_tracks_are_hidden_only_where_enough_textured_ones_remain():
    """hide_low_texture "auto" (reconstruction's setting): hidden when the median frame keeps min_textured
    textured observations, else left visible so a plain video still has tracks; report.json says which."""
    frames = translating_video(T=6, H=80, W=120, velocity=(1.0, 0.5), seed=1)
    frames[:, 10:50, 60:110] = 128  # a flat grey block
    queries = np.array([[0, 85.0, 30.0], [0, 30.0, 40.0]], np.float32)  # on the block / on texture
    tracks = Tracks(gt_positions(queries, 6, (1.0, 0.5)), np.ones((6, 2), bool), (80, 120), query_frame=np.zeros(2, np.int64))
    hidden = refine_tracks(frames, tracks, {"hide_low_texture": "auto", "min_textured": 1})
    kept = refine_tracks(frames, tracks, {"hide_low_texture": "auto", "min_textured": 2})
    assert hidden.stats()["low_texture_hidden"] and not hidden.tracks.visible[1:, 0].any() and hidden.tracks.visible[:, 1].all()
    assert not kept.stats()["low_texture_hidden"] and kept.tracks.visible.all()
    assert (hidden.status[1:, 0] == LOW_TEXTURE).all() and (kept.status[1:, 0] == LOW_TEXTURE).all()
    with pytest.raises(ValueError, match="hide_low_texture"):
        refine_tracks(frames, tracks, {"hide_low_texture": "sometimes"})


def test_walks_cover_every_observation_once_and_split_the_heavier_direction():
    """Refinement's walks (a time direction and a group of tracks each): every observation to refine lies in
    exactly one, and the direction with most of the work is split so that no walk holds most of it."""
    rng = np.random.default_rng(0)
    T, N = 30, 300
    qf = rng.integers(0, 6, N)  # early queries: most observations lie after them
    todo = rng.random((T, N)) < 0.7
    todo[qf, np.arange(N)] = False
    t = np.arange(T)[:, None]
    seen, sizes = np.zeros((T, N), int), []
    walks = refine_module._walks(todo, qf, 2)
    for forward, ids in walks:
        mine = todo[:, ids] & ((qf[ids] < t) if forward else (qf[ids] > t))
        seen[:, ids] += mine
        sizes.append(int(mine.sum()))
    assert (seen == todo).all()
    assert len(walks) == 3 and sizes == sorted(sizes, reverse=True)
    assert max(sizes) < 0.5 * todo.sum()  # one forward walk would hold 91 %


def test_split_walks_give_the_result_of_one_walk_per_direction(clip, monkeypatch):
    """Tracks are aligned independently, so refining them in groups (side by side) changes nothing."""
    noisy = _noisy_tracks(clip)
    walks, split_walks = [], refine_module._walks
    monkeypatch.setattr(refine_module, "_walks", lambda todo, qf, parts: walks.extend(split_walks(todo, qf, 8)) or walks)
    split = refine_tracks(clip["video"], noisy)
    assert len(walks) >= 6
    everything = np.arange(noisy.num_tracks)
    monkeypatch.setattr(refine_module, "_walks", lambda todo, qf, parts: [(True, everything), (False, everything)])
    whole = refine_tracks(clip["video"], noisy)
    assert np.array_equal(split.status, whole.status) and np.array_equal(split.shift, whole.shift)
    assert np.array_equal(split.tracks.xy, whole.tracks.xy) and np.array_equal(split.tracks.visible, whole.tracks.visible)


def test_affine_alignment_recovers_a_known_warp():
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.uniform(0, 255, (300, 300)).astype(np.float32), (0, 0), 2.5)
    c = rng.uniform(100, 200, (60, 2)).astype(np.float32)
    ang = np.radians(6)
    B = 1.08 * np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    b = np.array([4.3, -2.6])
    warped = cv2.warpAffine(img, np.concatenate([B, b[:, None]], 1).astype(np.float32), (300, 300), flags=cv2.INTER_CUBIC)
    truth = (c @ B.T + b).astype(np.float32)
    A, p, conv = affine_align(prepare(sample(img, c, patch_grid(7))), warped, truth + 0.8, iterations=20)
    assert conv.all()
    assert np.linalg.norm(p - truth, axis=1).mean() < 0.05
    assert np.abs(A - B).max() < 0.02


class SpyRefine:
    """Wraps refine_tracks and records which tracks went through it."""

    def __init__(self):
        self.calls = []

    def __call__(self, frames, tracks, conf=None, tracker=None):
        self.calls.append(tracks.num_tracks)
        return refine_module.refine_tracks(frames, tracks, conf, tracker)


@pytest.mark.parametrize("provider", [LucasKanadeProvider(), TranslationProvider((1.5, -0.5))], ids=["lk", "fake"])
def test_every_provider_goes_through_the_same_refinement(provider, monkeypatch, tmp_path):
    from sfm_tracks import pipeline, pseudo_labels

    spy = SpyRefine()
    monkeypatch.setattr(pipeline, "refine_tracks", spy)
    monkeypatch.setattr(pseudo_labels, "refine_tracks", spy)
    frames = textured_video(T=12, H=96, W=128, velocity=(1.5, -0.5))
    names = [f"frame_{t:06d}.png" for t in range(12)]
    conf = {"mapping": {"matches": "off"}, "output": {"video": False}, "camera": {"intrinsics": [100.0, 64.0, 48.0]},
            "queries": {"max_points_per_frame": 64}}
    try:
        report = pipeline.run((frames, names), tmp_path / "out", conf, provider=provider)
    except pipeline.ReconstructionError:
        report = None  # a translating plane is degenerate for SfM; the refinement step has run before mapping
    assert len(spy.calls) == 1 and spy.calls[0] > 0
    if report is not None:
        assert report["refine"]["enabled"] and report["refine"]["refined"] > 0
    queries = pseudo_labels.video_queries(frames, "clip", {**pseudo_labels.DEFAULT_CONF, "num_queries": 32})
    pseudo_labels.label_with_teacher(frames, "t", provider, queries, {**pseudo_labels.DEFAULT_CONF, "geometric_filter": False})
    assert len(spy.calls) == 2
    pseudo_labels.label_with_teacher(frames, "t", provider, queries, {**pseudo_labels.DEFAULT_CONF, "geometric_filter": False,
                                                                      "refine": False})
    assert len(spy.calls) == 2  # off means off


def test_reconstruct_cli_refines_by_default_and_no_refine_turns_it_off():
    from pipelines.reconstruct import config, parse_args
    from sfm_tracks.pipeline import DEFAULT_CONF, merge_conf

    def enabled(*argv):
        return merge_conf(DEFAULT_CONF, config(parse_args(["in.mp4", "-o", "out", *argv])))["refine"]["enabled"]

    assert enabled() == "auto" and enabled("--refine") is True and enabled("--no-refine") is False


def test_image_folders_are_not_refined_by_default(monkeypatch, tmp_path):
    """auto: videos are refined, image folders not (refinement lowered AUC@5 on the photo sets with true cameras)."""
    import cv2

    from sfm_tracks import pipeline

    spy = SpyRefine()
    monkeypatch.setattr(pipeline, "refine_tracks", spy)
    frames = textured_video(T=6, H=96, W=128, velocity=(1.5, -0.5))
    folder = tmp_path / "photos"
    folder.mkdir()
    for t, f in enumerate(frames):
        cv2.imwrite(str(folder / f"p{t}.png"), f[..., ::-1])
    conf = {"mapping": {"matches": "off"}, "output": {"video": False}, "camera": {"intrinsics": [100.0, 64.0, 48.0]}}
    for refine, calls in (("auto", 0), (True, 1)):
        try:
            report = pipeline.run(folder, tmp_path / f"out_{refine}", {**conf, "refine": {"enabled": refine}})
            assert report["refine"]["enabled"] is (refine is True)
        except pipeline.ReconstructionError:
            pass  # a translating plane is degenerate for SfM; the refinement decision came before mapping
        assert len(spy.calls) == calls
