import numpy as np
import pytest
import torch

from sfm_tracks.tracking.vggsfm import VGGSfMTrackerAdapter, detect_query_frame_index, swap_order
from tests.synthetic import TranslationProvider, gt_positions, translating_video

V = (1.0, -0.5)
S, Q = 10, 6


class TimeOrderedGT(TranslationProvider):
    """GT tracker that, like CoTracker, only works on frames in time order (fails loudly otherwise)."""

    def track(self, frames, queries):
        stamps = frames[:, 0, 0, 0].astype(int)
        assert (np.diff(stamps) == 1).all(), f"frames not in time order: {stamps}"
        return super().track(frames, queries)


def _vggsfm_inputs():
    frames = translating_video(T=S, velocity=V, stamp=True)  # time order
    order = swap_order(Q, S)
    images = torch.from_numpy(frames[order]).permute(0, 3, 1, 2)[None].float() / 255  # VGGSfM order
    xy = np.array([[30.0, 30.0], [50.5, 20.25], [12.0, 40.0]], np.float32)
    return frames, order, images, torch.from_numpy(xy)[None]


def test_swap_order_is_self_inverse():
    o = swap_order(3, 6)
    np.testing.assert_array_equal(o, [3, 1, 2, 0, 4, 5])
    np.testing.assert_array_equal(o[o], np.arange(6))


def test_outputs_in_vggsfm_order_equal_gt():
    frames, order, images, qp = _vggsfm_inputs()
    adapter = VGGSfMTrackerAdapter(TimeOrderedGT(V))
    assert adapter.process_images_to_fmaps(images) is None
    fine, coarse, vis, score = adapter(images, qp, fmaps=None, fine_tracking=True, query_frame_index=Q)
    assert fine.shape == (1, S, 3, 2) and vis.shape == (1, S, 3) and score.shape == (1, S, 3)
    assert fine.dtype == torch.float32 and vis.dtype == torch.float32
    gt_time = gt_positions(np.concatenate([np.full((3, 1), Q), qp[0].numpy()], 1), S, V)
    np.testing.assert_allclose(fine[0].numpy(), gt_time[order], atol=1e-4)
    np.testing.assert_allclose(fine[0, 0].numpy(), qp[0].numpy(), atol=1e-5)  # frame 0 = query frame
    torch.testing.assert_close(coarse, fine)
    inside = (gt_time[order][..., 0] >= 0) & (gt_time[order][..., 0] <= 79)
    np.testing.assert_array_equal(vis[0].numpy() > 0.5, inside)


def test_query_frame_detected_from_time_ordered_images():
    frames, order, images, qp = _vggsfm_inputs()
    ref = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    assert detect_query_frame_index(images, ref) == Q
    adapter = VGGSfMTrackerAdapter(TimeOrderedGT(V), time_ordered_images=ref)
    fine, *_ = adapter(images, qp)
    gt_time = gt_positions(np.concatenate([np.full((3, 1), Q), qp[0].numpy()], 1), S, V)
    np.testing.assert_allclose(fine[0].numpy(), gt_time[order], atol=1e-4)


def test_wrong_query_frame_is_caught_by_time_order():
    _, _, images, qp = _vggsfm_inputs()
    with pytest.raises(AssertionError, match="time order"):
        VGGSfMTrackerAdapter(TimeOrderedGT(V))(images, qp)  # default q=0 leaves frames swapped
