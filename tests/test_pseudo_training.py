"""Student training on pseudo-labels: dataset contract and label mask, the fine-tuning recipe."""
import json

import numpy as np
import pytest
import torch

from cotracker3.data.pseudo_labels import PseudoLabelDataset, label_files, label_mask
from cotracker3.training import Trainer, get_config
from pipelines import relabel
from sfm_tracks.video import write_video
from tests.synthetic import textured_video

T = 12


@pytest.fixture(scope="module")
def labels(tmp_path_factory):
    d = tmp_path_factory.mktemp("pl")
    write_video(d / "clip.mp4", textured_video(T=T, H=72, W=128, velocity=(1.0, 0.5)))
    out = d / "labels"
    relabel.run([str(d / "clip.mp4")], out, {"num_queries": 32, "geometric_filter": False, "max_frames": T, "max_side": 96})
    # inject filter verdicts: track 0 rejected in 3D from frame 6, track 1 fails the cycle from frame 4
    with np.load(out / "clip.npz") as z:
        arrays = dict(z)
    arrays["geo_state"][6:, 0] = -1
    arrays["cycle_ok"][4:, 1] = False
    relabel.write_npz(out / "clip.npz", arrays)
    return out


def test_dataset_uses_only_kept_labels(labels):
    assert [p.name for p in label_files(labels)] == ["clip.npz"]
    ds = PseudoLabelDataset(str(labels), seq_len=T, num_tracks=64, crop_size=(48, 64), seed=0, samples_per_video=3)
    assert len(ds) == 3
    s = ds[0]
    with np.load(labels / "clip.npz") as z:
        mask = z["visible"] & z["cycle_ok"] & (z["geo_state"] >= 0)
        tracks, size = z["tracks"], z["frame_size"]
    keep = np.flatnonzero(mask.sum(0) >= 2)
    k = len(keep)
    assert s["video"].shape == (T, 3, 48, 64) and s["video"].dtype == torch.float32 and s["video"].max() > 100
    assert s["trajectory"].shape == (T, 64, 2) and s["visibility"].shape == (T, 64) and s["valid"].shape == (T, 64)
    np.testing.assert_array_equal(s["visibility"][:, :k].numpy(), mask[:, keep])
    assert not s["visibility"][:, k:].any() and not s["valid"][:, k:].any() and s["valid"][:, :k].all()
    assert not s["visibility"][6:, 0].any() and not s["visibility"][4:, 1].any() and s["visibility"][:4, 1].any()
    scale = np.array([64 / size[1], 48 / size[0]])
    np.testing.assert_allclose(s["trajectory"][:, :k].numpy(), (tracks[:, keep] + 0.5) * scale - 0.5, atol=1e-4)
    qf = s["query_frame"][:k].numpy()
    assert s["visibility"][qf, np.arange(k)].all()  # queried where a label exists


@pytest.mark.parametrize("filters,track0_late,track1_late", [
    (("cycle", "geometric"), False, False), (("cycle",), True, False), (("geometric",), False, True), ((), True, True)])
def test_filter_ablations_choose_the_label_mask(labels, filters, track0_late, track1_late):
    ds = PseudoLabelDataset(str(labels), seq_len=T, num_tracks=64, crop_size=(48, 64), samples_per_video=1, filters=filters)
    with np.load(labels / "clip.npz") as z:
        keep = np.flatnonzero(label_mask(z, filters).sum(0) >= 2)
        seen = z["visible"]
    vis = ds[0]["visibility"].numpy()
    for track, late, frame in ((0, track0_late, 6), (1, track1_late, 4)):
        col = np.flatnonzero(keep == track)[0]
        assert vis[frame:, col].any() == (late and seen[frame:, track].any())
    with pytest.raises(ValueError, match="unknown label filters"):
        PseudoLabelDataset(str(labels), seq_len=T, num_tracks=8, crop_size=(48, 64), filters=("colour",))


def test_pseudo_stage_recipe_freezes_vis_conf_head(labels, tmp_path):
    torch.set_num_threads(1)
    conf = get_config("tiny", "pseudo", data={"labels": str(labels), "samples_per_video": 8},
                      train={"steps": 3, "log_every": 1, "checkpoint_every": 100}, eval={"num_clips": 0})
    tc = conf["train"]
    assert (tc["lr"], tc["weight_decay"], tc["pct_start"], tc["clip_grad_norm"]) == (5e-5, 1e-5, 0.0, 10.0)
    trainer = Trainer(conf, tmp_path)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.fit()
    frozen = [n for n in before if "vis_conf_head" in n]
    assert frozen == ["updateformer.vis_conf_head.weight", "updateformer.vis_conf_head.bias"]
    for n, p in trainer.model.named_parameters():
        assert p.requires_grad == (n not in frozen)
        if n in frozen:
            assert torch.equal(p, before[n])
    assert sum(not torch.equal(p, before[n]) for n, p in trainer.model.named_parameters()) > 10
    recs = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(recs) == 3 and set(recs[0]) >= {"loss", "track_visible"}
    assert "visibility" not in recs[0] and "confidence" not in recs[0] and "track_occluded" not in recs[0]
    assert recs[0]["loss"] == recs[0]["track_visible"] > 0
    assert 4.9e-5 < recs[0]["lr"] <= 5e-5  # no warm-up: cosine decay from the peak over steps + 100


def test_mixing_synthetic_clips(labels):
    from cotracker3.data.pseudo_labels import pseudo_dataset
    ds = pseudo_dataset(str(labels), seq_len=8, num_tracks=16, crop_size=(32, 32), seed=0, samples_per_video=20,
                        synthetic_fraction=0.5, synthetic={"num_clips": 4})
    kinds = [np.random.default_rng([0, i, 1]).uniform() < 0.5 for i in range(len(ds))]
    assert 0 < sum(kinds) < len(ds)
    s = ds[kinds.index(True)]
    assert s["video"].shape == (8, 3, 32, 32)
