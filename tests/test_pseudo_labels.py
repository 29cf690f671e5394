"""Pseudo-labelling logic: the cycle filter is reused, the 3D filter spares moving objects, draws are seeded."""
import numpy as np
import pytest

from sfm_tracks.colmap.geometric_filter import REJECTED, UNVERIFIABLE, VERIFIED
from sfm_tracks.pseudo_labels import TooFewQueries, choose_teacher, epoch_teachers, geometric_states, label_video, sample_queries, DEFAULT_CONF
from sfm_tracks.testing import DRIFT, GOOD, JUMP, MOVING, synthetic_scene
from tests.synthetic import TranslationProvider, textured_video

V = (1.0, 0.5)
T, H, W = 32, 96, 128
DRIFT_FRAME = 15


class DriftTeacher(TranslationProvider):
    """Exact, except that points queried before DRIFT_FRAME in the top half jump 6 px right from
    DRIFT_FRAME on. Return trips start at their anchors (query frame >= DRIFT_FRAME) and are exact,
    so they land 6 px from the query: what a real drifting teacher's cycle looks like."""

    name = "drift"

    def track(self, frames, queries):
        tr = super().track(frames, queries)
        g = frames[:, 0, 0, 0].astype(int)
        gq = g[queries[:, 0].astype(int)]
        drift = (g[:, None] >= DRIFT_FRAME) & (gq[None] < DRIFT_FRAME) & (queries[None, :, 2] < H / 2)
        tr.xy[..., 0] += 6.0 * drift
        tr.visible &= (tr.xy[..., 0] >= 0) & (tr.xy[..., 0] <= frames.shape[2] - 1)
        return tr


def test_cycle_filter_rejects_from_the_drift_frame_on_not_before():
    frames = textured_video(T=T, H=H, W=W, velocity=V)
    conf = {"num_queries": 64, "geometric_filter": False, "cycle_anchors": None, "refine": False}  # the cycle filter alone (refine would hide the 6 px drift first)
    lab = label_video(frames, [("drift", DriftTeacher(V))], "clip", conf)
    assert lab.teacher == "drift" and lab.note == "geometric filter off"
    assert (lab.queries[:, 0] < np.ceil(T / 4)).all()  # query frames from the first quarter
    assert (lab.geo_state == 0).all()
    t = np.arange(T)[:, None]
    top = lab.queries[:, 2] < H / 2
    assert top.sum() >= 10 and (~top).sum() >= 10
    # drifting tracks: clean frames kept, every frame from the drift on rejected
    np.testing.assert_array_equal(lab.cycle_ok[:, top], lab.visible[:, top] & (t < DRIFT_FRAME))
    assert lab.visible[DRIFT_FRAME:, top].any()  # there was something to reject
    # clean tracks keep everything the teacher saw
    np.testing.assert_array_equal(lab.cycle_ok[:, ~top], lab.visible[:, ~top])
    assert lab.stats["after_cycle"] == int(lab.cycle_ok.sum()) < lab.stats["visible"]
    np.testing.assert_array_equal(lab.label_mask, lab.cycle_ok)


def test_3d_filter_spares_moving_objects_and_rejects_drift():
    s = synthetic_scene(num_frames=20, num_tracks=300, outlier_fraction=0.1, moving_fraction=0.15, seed=3)
    keep = np.ones(s.tracks.visible.shape, bool)
    state, note = geometric_states(s.tracks, keep)
    assert note.startswith("reconstruction:")
    vis = s.tracks.visible
    mov = s.kind == MOVING
    assert mov.sum() > 20
    assert not (state[:, mov] == REJECTED).any()  # dynamic content is unverifiable, never rejected
    assert (state[:, mov] == UNVERIFIABLE).all()
    good = s.kind == GOOD
    assert (state[:, good][vis[:, good]] == VERIFIED).mean() > 0.9
    bad = (s.kind == DRIFT) | (s.kind == JUMP)
    # a drifting track whose clean part is its majority keeps its 3D point: the drift is rejected
    # (tracks drifting for most of their length look dynamic and stay unverifiable, see geometric_filter)
    supported = (state == VERIFIED).any(0)
    far = (s.offset > 12) & vis & (bad & supported)[None]
    assert far.sum() > 20 and (state[far] == REJECTED).all()
    assert not (state[:, good] == REJECTED).any()
    assert not (state[~vis] != UNVERIFIABLE).any()


def test_failed_reconstruction_leaves_everything_unverifiable():
    s = synthetic_scene(num_frames=12, num_tracks=150, outlier_fraction=0.0, motion="rotation", seed=1)
    state, note = geometric_states(s.tracks, np.ones(s.tracks.visible.shape, bool))
    assert note.startswith("reconstruction failed") and "parallax" in note
    assert state.dtype == np.int8 and (state == 0).all()


def test_too_few_sift_points_raise():
    flat = np.full((8, 64, 64, 3), 128, np.uint8)
    with pytest.raises(TooFewQueries):
        sample_queries(flat, dict(DEFAULT_CONF), np.random.default_rng(0))


def test_teacher_draw_is_seeded_by_name():
    teachers = [("a", None), ("b", None), ("c", None)]
    picks = [choose_teacher(teachers, f"video{i}")[0] for i in range(60)]
    assert picks == [choose_teacher(teachers, f"video{i}")[0] for i in range(60)]
    assert set(picks) == {"a", "b", "c"}
    assert picks != [choose_teacher(teachers, f"video{i}", seed=1)[0] for i in range(60)]


def test_a_teacher_per_video_and_epoch():
    teachers = [("a", None), ("b", None), ("c", None)]
    draws = [epoch_teachers(teachers, f"video{i}", 0, 4) for i in range(30)]
    assert [d[0] for d in draws] == [choose_teacher(teachers, f"video{i}")[0] for i in range(30)]  # epoch 0 as before
    assert draws == [epoch_teachers(teachers, f"video{i}", 0, 4) for i in range(30)]
    assert sum(len(set(d)) > 1 for d in draws) > 15  # most videos meet several teachers over 4 epochs
