"""Training-mode forward + official losses + backward vs. tests/fixtures/train_losses.npz.

This is the end-to-end check of what training optimises: the model's `train_data`, the way
`sequence_losses` combines it, and the gradients that reach the parameters (fixture README,
section train_losses.npz; weights from make_weights.py, seed 1000).
"""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cotracker3.losses import sequence_losses
from cotracker3.model import CoTrackerThreeOffline, CoTrackerThreeOnline

FIXTURES = Path(__file__).parent / "fixtures"
sys.path.insert(0, str(FIXTURES))
from make_weights import make_state_dict  # noqa: E402

LOSS_NAMES = {
    "track_visible_x0.05": "track_visible",
    "track_occluded_x0.01": "track_occluded",
    "visibility_bce": "visibility",
    "confidence": "confidence",
    "total": "total",
}
CASES = {  # tag -> (model class, window_len, forward kwargs)
    "offline": (CoTrackerThreeOffline, 60, {}),
    "online": (CoTrackerThreeOnline, 16, {"is_online": False}),
}


@pytest.fixture(scope="module")
def fx():
    return np.load(FIXTURES / "train_losses.npz")


# ~25 s of CPU per tag (full-size model, 3 online windows): the heaviest tests of the suite.
@pytest.fixture(scope="module", params=[pytest.param(t, marks=pytest.mark.slow) for t in CASES])
def run(request, fx):
    """Forward (train mode), losses, backward for one tag; computed once per module."""
    tag = request.param
    cls, window_len, kwargs = CASES[tag]
    torch.manual_seed(0)
    model = cls(stride=4, corr_radius=3, window_len=window_len)
    model.load_state_dict(make_state_dict(str(FIXTURES / f"cotracker3_{tag}_state_dict.json"), 1000))
    model.train()
    video = torch.from_numpy(fx[f"{tag}_video_uint8"]).float()
    queries = torch.from_numpy(fx[f"{tag}_queries"])
    coords, vis, conf, train_data = model(video, queries, iters=int(fx[f"{tag}_iters"]), is_train=True, **kwargs)
    losses = sequence_losses(
        train_data,
        torch.from_numpy(fx[f"{tag}_gt_tracks"]),
        torch.from_numpy(fx[f"{tag}_gt_visibility"]),
        window_len=window_len,
    )
    model.zero_grad()
    losses["total"].backward()
    return tag, model, (coords, vis, conf), train_data, losses


def test_outputs_and_windows(fx, run):
    tag, _, (coords, vis, conf), train_data, _ = run
    assert len(train_data[0]) == int(fx[f"{tag}_num_windows"])
    np.testing.assert_allclose(coords.detach().numpy(), fx[f"{tag}_out_coords"], rtol=0, atol=2e-4)
    np.testing.assert_allclose(vis.detach().numpy(), fx[f"{tag}_out_vis"], rtol=0, atol=5e-6)
    np.testing.assert_allclose(conf.detach().numpy(), fx[f"{tag}_out_conf"], rtol=0, atol=5e-6)
    np.testing.assert_array_equal(train_data[3].float().numpy(), fx[f"{tag}_valid_mask"])
    for w in range(len(train_data[0])):
        for k, key in enumerate(("coords", "vis", "conf")):
            ours = torch.stack(train_data[k][w]).detach().numpy()
            atol = 2e-4 if key == "coords" else 5e-6
            np.testing.assert_allclose(ours, fx[f"{tag}_w{w}_{key}_per_iter"], rtol=0, atol=atol, err_msg=f"w{w} {key}")


def test_losses(fx, run):
    tag, _, _, _, losses = run
    for fx_name, key in LOSS_NAMES.items():
        assert float(losses[key].detach()) == pytest.approx(float(fx[f"{tag}_loss_{fx_name}"]), rel=1e-5), key


# The first convolution's weight gradient sums the whole video's pixels with heavy cancellation, so
# in fp32 it depends on the convolution kernel the host picks: against the fixture, relative L2 error
# 2.6e-4 (offline) / 3.7e-3 (online) with oneDNN on an AVX2 host, 1.3e-2 / 3.4e-3 with oneDNN off,
# while every other gradient agrees to 1e-6. Its bound is 4x the worst measured spread.
LOOSE_GRADIENTS = {"fnet.conv1.weight": 5e-2}


def test_gradients(fx, run):
    tag, model, _, _, _ = run
    params = dict(model.named_parameters())
    prefix = f"{tag}_grad__"
    names = [k[len(prefix):] for k in fx.files if k.startswith(prefix)]
    assert len(names) == 6
    for name in names:
        ref = fx[prefix + name]
        ours = params[name].grad.numpy()
        assert ours.shape == ref.shape, name
        if name in LOOSE_GRADIENTS:
            assert np.linalg.norm(ours - ref) <= LOOSE_GRADIENTS[name] * np.linalg.norm(ref), name
        else:
            assert np.abs(ours - ref).max() <= 1e-4 * np.abs(ref).max(), name
    norm = torch.sqrt(sum((p.grad.double() ** 2).sum() for p in model.parameters() if p.grad is not None))
    ref_norm = float(fx[f"{tag}_grad_global_norm"])
    assert abs(float(norm) - ref_norm) <= 1e-4 * ref_norm
