import numpy as np
import pytest

from sfm_tracks import Tracks


def _tracks(T=5, N=7, **kw):
    rng = np.random.default_rng(0)
    return Tracks(xy=rng.uniform(0, 50, (T, N, 2)), visible=rng.uniform(size=(T, N)) > 0.3, image_size=(60, 80), **kw)


def test_roundtrip(tmp_path):
    t = _tracks(confidence=np.full((5, 7), 0.5), query_frame=np.arange(7) % 5, image_names=[f"{i}.png" for i in range(5)])
    t.save(tmp_path / "t.npz")
    u = Tracks.load(tmp_path / "t.npz")
    np.testing.assert_array_equal(t.xy, u.xy)
    np.testing.assert_array_equal(t.visible, u.visible)
    np.testing.assert_array_equal(t.confidence, u.confidence)
    np.testing.assert_array_equal(t.query_frame, u.query_frame)
    assert u.image_names == t.image_names and u.image_size == (60, 80)


def test_validation():
    with pytest.raises(ValueError, match=r"\(T, N, 2\)"):
        Tracks(xy=np.zeros((3, 4)), visible=np.zeros((3, 4), bool), image_size=(8, 8))
    with pytest.raises(ValueError, match="visible"):
        Tracks(xy=np.zeros((3, 4, 2)), visible=np.zeros((3, 5), bool), image_size=(8, 8))
    xy = np.zeros((3, 4, 2))
    xy[1, 2] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        Tracks(xy=xy, visible=np.ones((3, 4), bool), image_size=(8, 8))
    vis = np.ones((3, 4), bool)
    vis[1, 2] = False
    Tracks(xy=xy, visible=vis, image_size=(8, 8))  # NaN where invisible is allowed
    with pytest.raises(ValueError, match="query_frame"):
        Tracks(xy=np.zeros((3, 4, 2)), visible=np.ones((3, 4), bool), image_size=(8, 8), query_frame=np.array([0, 1, 2, 3]))


def test_select():
    t = _tracks(query_frame=np.zeros(7, int))
    s = t.select(tracks=[0, 2], frames=slice(1, 4))
    assert s.xy.shape == (3, 2, 2) and s.query_frame is None
    np.testing.assert_array_equal(s.xy[0, 1], t.xy[1, 2])
