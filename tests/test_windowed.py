import numpy as np
import pytest

from sfm_tracks.tracking.providers import LucasKanadeProvider, TrackProvider
from sfm_tracks.tracking.windowed import window_bounds, windowed
from tests.synthetic import TranslationProvider, translating_video

V = (1.0, 0.25)


def test_window_bounds():
    assert window_bounds(20, 8, 3) == [(0, 8), (5, 13), (10, 18), (15, 20)]
    assert window_bounds(6, 8, 3) == [(0, 6)]
    with pytest.raises(ValueError):
        window_bounds(20, 5, 3)


def _queries(T, n=60, seed=1):
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, T, n), rng.uniform(5, 75, n), rng.uniform(5, 58, n)], 1).astype(np.float32)


def test_stitched_equals_unstitched():
    T = 30
    frames = translating_video(T=T, H=64, W=80, velocity=V, stamp=True)
    q = _queries(T)
    full = TranslationProvider(V)(frames, q)
    prov = TranslationProvider(V)
    st = windowed(prov, frames, q, window=8, overlap=3, max_queries=25)
    np.testing.assert_array_equal(st.visible, full.visible)
    np.testing.assert_allclose(st.xy[st.visible], full.xy[full.visible], atol=1e-4)
    np.testing.assert_array_equal(st.query_frame, full.query_frame)
    assert all(t <= 8 and n <= 25 for t, n in prov.calls)  # bounded memory per call
    assert st.visible.sum() > 0.5 * T * len(q)  # the test is not vacuous


class _WindowTagged(TrackProvider):
    """GT positions plus a per-call offset, to see which call produced each frame."""

    name = "tagged"

    def __init__(self):
        self.gt = TranslationProvider(V)
        self.n = 0

    def track(self, frames, queries):
        self.n += 1
        tr = self.gt.track(frames, queries)
        tr.xy = tr.xy + np.float32(0.001 * self.n)
        return tr


def test_overlap_comes_from_one_window():
    T = 20
    frames = translating_video(T=T, velocity=V, stamp=True)
    q = np.array([[2, 20, 30]], np.float32)  # home window 0 = frames [0, 8)
    st = windowed(_WindowTagged(), frames, q, window=8, overlap=3, min_conf=0.5)
    tag = np.round((st.xy[:, 0, 0] - (20 + (np.arange(T) - 2) * V[0])) / 0.001).astype(int)
    # window 0 gives frames 0-7 (incl. its overlap 5-7), the forward carry into window 1 gives 8-12, ...
    assert (tag[:8] == tag[0]).all()
    assert len(set(tag[8:13])) == 1 and tag[8] != tag[0]
    assert len(set(tag[13:18])) == 1 and tag[13] != tag[8]


def test_no_confident_overlap_stops_the_carry():
    class Vanishing(TranslationProvider):
        def track(self, frames, queries):
            tr = super().track(frames, queries)
            g = frames[:, 0, 0, 0]
            tr.visible &= (g < 6)[:, None]  # nothing visible from global frame 6 on
            return tr

    frames = translating_video(T=20, velocity=V, stamp=True)
    st = windowed(Vanishing(V), frames, np.array([[0, 20, 30]], np.float32), window=8, overlap=3)
    assert st.visible[:6, 0].all() and not st.visible[6:, 0].any()


def test_windowed_lucas_kanade_close_to_full():
    frames = translating_video(T=24, velocity=V)
    q = _queries(24, n=20, seed=3)
    full = LucasKanadeProvider()(frames, q)
    st = windowed(LucasKanadeProvider(), frames, q, window=10, overlap=4)
    both = full.visible & st.visible
    assert both.sum() > 0.5 * st.visible.size
    assert np.abs(full.xy[both] - st.xy[both]).max() < 0.5


def test_spacing_drops_queries_on_points_already_tracked():
    """The same points queried again at later frames (a revisit) are tracked once; new points are kept."""
    T = 40  # windows start at 0, 5, ..., 35: frame 30 is home to window 6
    frames = translating_video(T=T, H=64, W=80, velocity=V, stamp=True)
    first = np.array([[0, x, y] for x in (20, 40) for y in (20, 40)], np.float32)
    again = first[:, 1:] + np.float32(V) * 30  # the same four points where they are at frame 30
    fresh = np.array([[30, 12.0, 12.0]], np.float32)  # nothing tracked near it
    q = np.concatenate([first, np.c_[np.full(4, 30, np.float32), again], fresh])
    prov = TranslationProvider(V)
    spaced = windowed(prov, frames, q, window=8, overlap=3, max_live=0, min_spacing=4.0)
    plain = windowed(TranslationProvider(V), frames, q, window=8, overlap=3)
    assert plain.visible[:, 4:8].any(0).all()  # without spacing the repeats are tracked as tracks of their own
    assert not spaced.visible[:, 4:8].any()  # with it they are dropped ...
    np.testing.assert_array_equal(spaced.visible[:, :4], plain.visible[:, :4])  # ... the originals untouched
    np.testing.assert_array_equal(spaced.visible[:, 8], plain.visible[:, 8])  # and the new point tracked in full
    assert spaced.visible[:, 8].sum() > 20
    # the repeats were neither carried forward (window 7 tracks 5 points, not 9) nor back (1 point, not 5)
    forward, backward = prov.calls[:8], prov.calls[8:]
    assert forward[6][1] == 9 and forward[7][1] == 5 and max(n for _, n in backward) == 1
    # only crowded frames are thinned: frame 30 holds 4 carried + 5 new tracks, so a budget of 9 keeps all
    roomy = windowed(TranslationProvider(V), frames, q, window=8, overlap=3, max_live=9, min_spacing=4.0)
    np.testing.assert_array_equal(roomy.visible, plain.visible)
    tight = windowed(TranslationProvider(V), frames, q, window=8, overlap=3, max_live=8, min_spacing=4.0)
    np.testing.assert_array_equal(tight.visible, spaced.visible)
    # keep_dropped=False: the same tracks without the dropped columns, in query order
    kept = windowed(TranslationProvider(V), frames, q, window=8, overlap=3, max_live=0, min_spacing=4.0, keep_dropped=False)
    same = spaced.select(tracks=[0, 1, 2, 3, 8])
    for a, b in ((kept.xy, same.xy), (kept.visible, same.visible), (kept.query_frame, q[[0, 1, 2, 3, 8], 0])):
        np.testing.assert_array_equal(a, b)


def test_stitcher_reuses_the_columns_of_dropped_queries():
    """The stitcher's arrays hold the kept tracks plus the newest queries, not a column for every query."""
    from sfm_tracks.tracking.windowed import _Stitcher
    from sfm_tracks.tracks import Tracks

    T, N = 6, 200
    q = np.stack([np.zeros(N), np.arange(N) + 0.5, np.full(N, 3.0)], 1).astype(np.float32)
    out = _Stitcher(T, q, min_conf=0.5)
    res = Tracks(xy=np.ones((T, 10, 2), np.float32), visible=np.ones((T, 10), bool), image_size=(8, 64))
    for k in range(20):  # ten new queries a round, of which five are dropped as crowded
        ids = np.arange(10 * k, 10 * k + 10)
        out.write(ids, res, np.arange(10), 0, slice(0, T))
        out.drop(ids[5:])
    assert out.xy.shape[1] <= 1.5 * (100 + 10)  # the kept ones and one round, grown by halves; not 200
    kept = out.tracks((8, 64), keep_dropped=False, query_frame=np.zeros(N, np.int64))
    assert kept.num_tracks == 100 and kept.visible.all()
    np.testing.assert_array_equal(kept.xy[0, :, 0], 1.0)


class _LostAt23(TranslationProvider):
    """The scene point at x=20 in frame 0 is lost from frame 23 on (global time); its neighbours are not."""

    def track(self, frames, queries):
        tr = super().track(frames, queries)
        g = frames[:, 0, 0, 0].astype(int)
        x0 = queries[:, 1] - g[queries[:, 0].astype(int)] * V[0]  # where each point was at frame 0
        tr.visible[np.ix_(g >= 23, np.abs(x0 - 20) < 0.5)] = False
        return tr


def test_spacing_stops_a_backward_carry_onto_a_tracked_point():
    """A point queried after an earlier track of it was lost is not carried back onto that track."""
    T = 24  # windows start at 0, 5, 10, 15, 20
    frames = translating_video(T=T, H=64, W=80, velocity=V, stamp=True)
    early = np.array([[0, 20, 30]], np.float32)
    late = np.array([[23, 20 + 23 * V[0] + 1.0, 30 + 23 * V[1]]], np.float32)  # 1 px beside the lost point
    q = np.concatenate([early, late])
    plain = windowed(_LostAt23(V), frames, q, window=8, overlap=3)
    spaced = windowed(_LostAt23(V), frames, q, window=8, overlap=3, max_live=0, min_spacing=4.0)
    assert plain.visible[:, 1].all()  # without spacing: carried back over the early track's whole life
    np.testing.assert_array_equal(spaced.visible[:, 0], plain.visible[:, 0])  # frames 0-22
    assert spaced.visible[:23, 0].all()
    # with it: the late track keeps its home window (20-23) and stops where the early track is in view
    np.testing.assert_array_equal(np.flatnonzero(spaced.visible[:, 1]), [20, 21, 22, 23])
