"""Training losses vs. the official values in tests/fixtures/train_losses.npz."""
from pathlib import Path

import numpy as np
import pytest
import torch

from cotracker3.losses import huber, masked_mean, sequence_losses, window_bounds

FIXTURE = Path(__file__).parent / "fixtures" / "train_losses.npz"
# fixture scalar name -> our dict key
NAMES = {
    "track_visible_x0.05": "track_visible",
    "track_occluded_x0.01": "track_occluded",
    "visibility_bce": "visibility",
    "confidence": "confidence",
    "total": "total",
}


@pytest.fixture(scope="module")
def fx():
    return np.load(FIXTURE)


def _inputs(fx, tag):
    """train_data exactly as the official model returns it, plus GT tensors."""
    n_win = int(fx[f"{tag}_num_windows"])
    lists = tuple(
        [[torch.from_numpy(it) for it in fx[f"{tag}_w{w}_{k}_per_iter"]] for w in range(n_win)]
        for k in ("coords", "vis", "conf")
    )
    train_data = lists + (torch.from_numpy(fx[f"{tag}_valid_mask"]),)
    return train_data, torch.from_numpy(fx[f"{tag}_gt_tracks"]), torch.from_numpy(fx[f"{tag}_gt_visibility"])


@pytest.mark.parametrize("tag,window_len", [("offline", 60), ("online", 16)])
def test_matches_official(fx, tag, window_len):
    train_data, gt, vis = _inputs(fx, tag)
    out = sequence_losses(train_data, gt, vis, window_len=window_len)
    for fx_name, key in NAMES.items():
        ref = float(fx[f"{tag}_loss_{fx_name}"])
        assert float(out[key]) == pytest.approx(ref, rel=1e-5), key


def test_online_windows_and_mask_matter(fx):
    """The online value depends on the window->frame mapping and the query-frame mask."""
    train_data, gt, vis = _inputs(fx, "online")
    ref = float(fx["online_loss_track_visible_x0.05"])
    assert window_bounds([16, 16, 12], 28, 8) == [(0, 16), (8, 24), (16, 28)]
    no_mask = train_data[:3] + (torch.ones_like(train_data[3]),)
    assert float(sequence_losses(no_mask, gt, vis, window_len=16)["track_visible"]) != pytest.approx(ref, rel=1e-3)
    with pytest.raises(ValueError):  # wrong step: windows would not tile T=28
        sequence_losses(train_data, gt, vis, window_len=12)
    with pytest.raises(ValueError):
        sequence_losses(train_data, gt, vis)  # several windows need window_len


def test_gradients_flow_to_right_heads(fx):
    train_data, gt, vis = _inputs(fx, "offline")
    coords = [[c.clone().requires_grad_() for c in w] for w in train_data[0]]
    conf = [[c.clone().requires_grad_() for c in w] for w in train_data[2]]
    out = sequence_losses((coords, train_data[1], conf, train_data[3]), gt, vis)
    (g_coord,) = torch.autograd.grad(out["confidence"], [coords[0][-1]], allow_unused=True)
    assert g_coord is None  # confidence target uses detached coordinates
    g_last, g_first = torch.autograd.grad(out["track_visible"], [coords[0][-1], coords[0][0]])
    # last iteration has weight 1, first gamma**3; Huber is linear-or-quadratic, so compare norms loosely
    assert g_last.abs().sum() > g_first.abs().sum() > 0


def test_hand_computed_small_case():
    """One window, two iterations, two points: every term worked out by hand."""
    gt = torch.zeros(1, 2, 2, 2)
    vis = torch.tensor([[[1.0, 0.0], [1.0, 1.0]]])  # point 1 occluded at frame 0
    c0 = torch.full((1, 2, 2, 2), 10.0)  # iteration 0: 10 px off on both axes
    c1 = torch.full((1, 2, 2, 2), 2.0)  # iteration 1: 2 px off
    v = torch.full((1, 2, 2), 0.5)
    conf = torch.full((1, 2, 2), 0.5)
    out = sequence_losses(([[c0, c1]], [[v, v]], [[conf, conf]], torch.ones(1, 2, 2)), gt, vis)
    h0, h1 = 6 * (10 - 3), 0.5 * 2**2  # Huber delta 6 of 10 px and 2 px
    vis_term = (0.8 * h0 + 1.0 * h1) / 2
    assert float(out["track_visible"]) == pytest.approx(0.05 * vis_term * 3 / (3 + 1e-6), rel=1e-6)
    occ_term = (0.8 * 10 + 1.0 * 2) / 2
    assert float(out["track_occluded"]) == pytest.approx(0.01 * occ_term, rel=1e-5)
    ln2 = float(np.log(2.0))
    assert float(out["visibility"]) == pytest.approx(ln2, rel=1e-6)
    assert float(out["confidence"]) == pytest.approx(ln2 * 3 / 4, rel=1e-6)  # 3 of 4 visible
    assert float(out["total"]) == pytest.approx(sum(float(out[k]) for k in NAMES.values() if k != "total"))


def test_helpers():
    assert float(masked_mean(torch.ones(3), torch.zeros(3))) == 0.0
    assert torch.allclose(huber(torch.tensor([-8.0, 1.0]), 6.0), torch.tensor([30.0, 0.5]))
