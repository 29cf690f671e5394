import av
import cv2
import numpy as np
import pytest

from sfm_tracks import Tracks
from sfm_tracks.video import VideoError, draw_tracks, iter_frames, pick_tracks, read_frames, rotate_frame, write_video


def _frames(T=10, H=48, W=64):
    """Frames whose mean brightness encodes the frame index, plus a white block at the top-left."""
    f = np.zeros((T, H, W, 3), np.uint8)
    for t in range(T):
        f[t] = 20 * t
        f[t, :12, :16] = 255
    return f


def _write_mp4(path, frames, rotation=None):
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        if rotation is not None:
            s.set_display_rotation(rotation)
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def test_read_mp4_roundtrip(tmp_path):
    src = _frames()
    _write_mp4(tmp_path / "v.mp4", src)
    frames, names = read_frames(tmp_path / "v.mp4")
    assert frames.shape == (10, 48, 64, 3) and frames.dtype == np.uint8
    assert names[0] == "frame_000000.png" and names[-1] == "frame_000009.png"
    # lossy codec: compare the brightness ramp, not exact pixels
    np.testing.assert_allclose(frames[:, 30:, 30:].mean((1, 2, 3)), 20 * np.arange(10), atol=6)


def test_stride_max_frames_max_side(tmp_path):
    _write_mp4(tmp_path / "v.mp4", _frames())
    frames, names = read_frames(tmp_path / "v.mp4", stride=3, max_frames=3, max_side=32)
    assert names == ["frame_000000.png", "frame_000003.png", "frame_000006.png"]
    assert frames.shape == (3, 24, 32, 3)
    np.testing.assert_allclose(frames[:, 15:, 16:].mean((1, 2, 3)), [0, 60, 120], atol=8)


def test_iterator_is_lazy(tmp_path):
    _write_mp4(tmp_path / "v.mp4", _frames())
    it = iter_frames(tmp_path / "v.mp4")
    name, frame = next(it)
    assert name == "frame_000000.png" and frame.shape == (48, 64, 3)
    it.close()


def test_rotated_video_is_returned_upright(tmp_path):
    # display matrix: rotate the stored picture 90 degrees counter-clockwise
    _write_mp4(tmp_path / "r.mp4", _frames(T=3), rotation=90)
    frames, _ = read_frames(tmp_path / "r.mp4")
    assert frames.shape == (3, 64, 48, 3)
    # stored top-left block ends up bottom-left after a CCW turn
    assert frames[0, -16:, :12].mean() > 200
    assert frames[0, :16, :12].mean() < 60


def test_rotate_frame_directions():
    f = np.zeros((2, 3, 1), np.uint8)
    f[0, 0] = 1  # top-left
    assert rotate_frame(f, 90)[2, 0, 0] == 1  # CCW: top-left -> bottom-left
    assert rotate_frame(f, -90)[0, 1, 0] == 1  # CW: top-left -> top-right
    assert rotate_frame(f, 180)[1, 2, 0] == 1
    assert rotate_frame(f, 0) is f


def test_missing_empty_corrupt(tmp_path):
    with pytest.raises(VideoError, match="no such"):
        read_frames(tmp_path / "nope.mp4")
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(VideoError, match="empty"):
        read_frames(tmp_path / "empty.mp4")
    (tmp_path / "junk.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(VideoError):
        read_frames(tmp_path / "junk.mp4")


def test_min_frames(tmp_path):
    _write_mp4(tmp_path / "v.mp4", _frames(T=1))
    with pytest.raises(VideoError, match="at least 2"):
        read_frames(tmp_path / "v.mp4", min_frames=2)


def test_image_folder(tmp_path):
    src = _frames(T=4)
    for t in (2, 0, 3, 1):  # written out of order: result must be sorted by name
        cv2.imwrite(str(tmp_path / f"img_{t:02d}.png"), cv2.cvtColor(src[t], cv2.COLOR_RGB2BGR))
    (tmp_path / "notes.txt").write_text("not an image, ignored")
    frames, names = read_frames(tmp_path)
    assert names == [f"img_{t:02d}.png" for t in range(4)]
    np.testing.assert_array_equal(frames, src)


def test_image_folder_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoError, match="no images"):
        read_frames(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    cv2.imwrite(str(bad / "a.png"), np.zeros((8, 8, 3), np.uint8))
    (bad / "b.png").write_bytes(b"this is not a png")
    with pytest.raises(VideoError, match="b.png"):
        read_frames(bad)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    cv2.imwrite(str(mixed / "a.png"), np.zeros((8, 8, 3), np.uint8))
    cv2.imwrite(str(mixed / "b.png"), np.zeros((8, 10, 3), np.uint8))
    with pytest.raises(VideoError, match="mixed image sizes"):
        read_frames(mixed)


def test_write_video_roundtrip_odd_size(tmp_path):
    src = _frames(T=5, H=47, W=63)
    write_video(tmp_path / "out.mp4", src, fps=5)
    frames, _ = read_frames(tmp_path / "out.mp4")
    assert frames.shape == (5, 48, 64, 3)  # padded to even size
    np.testing.assert_allclose(frames[:, 30:46, 30:62].mean((1, 2, 3)), 20 * np.arange(5), atol=6)


def test_draw_tracks_marks_visible_points_only():
    frames = np.zeros((3, 40, 50, 3), np.uint8)
    xy = np.array([[[10, 10], [40, 30]]] * 3, np.float32)
    vis = np.array([[True, False]] * 3)
    out = draw_tracks(frames, Tracks(xy=xy, visible=vis, image_size=(40, 50)))
    assert frames.max() == 0  # input untouched
    assert out[1, 10, 10].max() > 100
    assert out[1, 30, 40].max() == 0


def test_pick_tracks_caps_and_spreads():
    """A crowd of tracks in one corner does not crowd out the few elsewhere; never more than asked."""
    rng = np.random.default_rng(0)
    T, crowd, rest = 4, 500, 40
    xy = np.concatenate([rng.uniform(0, 20, (crowd, 2)), rng.uniform(20, 200, (rest, 2))])
    xy = np.broadcast_to(xy, (T, crowd + rest, 2)).astype(np.float32)
    vis = np.ones((T, crowd + rest), bool)
    vis[:, 3] = False  # never visible: never picked
    picked = pick_tracks(Tracks(xy=xy, visible=vis, image_size=(200, 200)), max_tracks=100)
    assert len(picked) == 100 and len(set(picked)) == 100 and 3 not in picked
    assert (picked >= crowd).sum() >= 35  # nearly all of the spread-out tracks
    assert len(pick_tracks(Tracks(xy=xy[:, :50], visible=vis[:, :50], image_size=(200, 200)), 100)) == 49


def test_draw_tracks_upscales_fades_and_rings_occluded_points():
    T, H, W = 10, 64, 96
    frames = np.zeros((T, H, W, 3), np.uint8)
    xy = np.zeros((T, 2, 2), np.float32)
    xy[:, 0] = np.stack([8.0 + 8 * np.arange(T), np.full(T, 20.0)], -1)  # moves right 8 px a frame
    xy[:, 1] = np.stack([np.full(T, 60.0), 10.0 + 4 * np.arange(T)], -1)  # moves down 4 px a frame
    vis = np.ones((T, 2), bool)
    vis[T - 1, 1] = False  # occluded in the last frame only
    out = draw_tracks(frames, Tracks(xy=xy, visible=vis, image_size=(H, W)), tail=8, min_long_side=384)
    assert out.shape == (T, 256, 384, 3)  # upscaled x4
    last = out[-1].max(-1).astype(int)
    s = 4.0

    def at(x, y):
        return last[int(round((y + 0.5) * s - 0.5)), int(round((x + 0.5) * s - 0.5))]

    # tail of track 0: newest segment bright, the oldest (7 frames back) faint, older than the tail absent
    y0 = 20.0
    newest, oldest = at(8 + 8 * (T - 1.5), y0), at(8 + 8 * (T - 8.5), y0)
    assert newest > 150 and 0 < oldest < newest / 2, (newest, oldest)
    assert at(8 + 8 * 0.5, y0) == 0
    # occluded point: a ring (dark centre, coloured rim), not a filled dot
    cx, cy = (60.0 + 0.5) * s - 0.5, (46.0 + 0.5) * s - 0.5
    assert last[int(cy), int(cx)] == 0
    r = max(2, round(3 * s ** 0.5))
    assert last[int(cy), int(cx + r)] > 50
    # while visible it is a filled dot
    assert out[-2].max(-1)[int(cy - 4 * s), int(cx)] > 100


def test_tracks_video_is_enlarged_and_drawn_in_chunks(tmp_path):
    """The pipeline's tracks.mp4: small frames enlarged to 512 px; chunking does not change a frame."""
    from sfm_tracks.video import write_tracks_video

    T, H, W = 12, 64, 128
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 255, (T, H, W, 3), dtype=np.uint8)
    xy = np.broadcast_to(rng.uniform(5, 60, (1, 400, 2)), (T, 400, 2)) + np.arange(T)[:, None, None]
    tracks = Tracks(xy=xy, visible=np.ones((T, 400), bool), image_size=(H, W))
    write_tracks_video(tmp_path / "a.mp4", frames, tracks, fps=5, chunk=5)
    write_tracks_video(tmp_path / "b.mp4", frames, tracks, fps=5, chunk=64)
    a, _ = read_frames(tmp_path / "a.mp4")
    b, _ = read_frames(tmp_path / "b.mp4")
    assert a.shape == (T, 256, 512, 3)
    np.testing.assert_array_equal(a, b)


def test_tracks_video_without_tracks_shows_the_frames(tmp_path):
    """A photo set can map on SIFT matches alone when no track survives the filters: tracks.mp4 is then the
    plain (enlarged) frames, not a crash (OpenCV refuses the empty colour table)."""
    from sfm_tracks.video import track_colors, write_tracks_video

    assert track_colors(0).shape == (0, 3)
    T, H, W = 4, 64, 128
    frames = np.random.default_rng(2).integers(0, 255, (T, H, W, 3), dtype=np.uint8)
    tracks = Tracks(xy=np.zeros((T, 0, 2)), visible=np.zeros((T, 0), bool), image_size=(H, W))
    write_tracks_video(tmp_path / "none.mp4", frames, tracks, fps=5)
    out, _ = read_frames(tmp_path / "none.mp4")
    assert out.shape == (T, 256, 512, 3)
