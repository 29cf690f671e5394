"""Training loop: learns, resumes exactly, logs without repeats, writes checkpoints atomically."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cotracker3.checkpoint import build_model, read_state_dict
from cotracker3.training import ResumableSampler, Trainer, atomic_save, get_config
from cotracker3.training.trainer import CHECKPOINT, is_frozen


class TranslatingTexture(torch.utils.data.Dataset):
    """A smooth random texture moving with a constant integer velocity (exact tracks)."""

    def __init__(self, size=32, frames=8, tracks=16, length=64):
        self.size, self.frames, self.tracks, self.length = size, frames, tracks, length

    def __len__(self):
        return self.length

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        S, T, N = self.size, self.frames, self.tracks
        big = S + 4 * T
        tex = F.interpolate(torch.rand(1, 3, big // 4, big // 4, generator=g), (big, big), mode="bilinear")[0] * 255
        v = torch.randint(-2, 3, (2,), generator=g)
        o = 2 * T  # start in the middle so the crop stays inside the texture
        video = torch.stack([tex[:, o - v[1] * t:o - v[1] * t + S, o - v[0] * t:o - v[0] * t + S] for t in range(T)])
        xy0 = torch.rand(N, 2, generator=g) * (S - 1)
        traj = xy0[None] + v[None, None].float() * torch.arange(T)[:, None, None]
        vis = ((traj >= 0) & (traj <= S - 1)).all(-1)
        vis[0] = True
        return {"video": video, "trajectory": traj, "visibility": vis, "valid": torch.ones(T, N, dtype=torch.bool),
                "query_frame": torch.zeros(N, dtype=torch.long)}


def tiny(steps, **train):
    return get_config("tiny", train=dict(steps=steps, checkpoint_every=4, **train), eval={"num_clips": 0})


def weights(trainer):
    return {k: v.clone() for k, v in trainer.model.state_dict().items()}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_tiny_loss_falls(tmp_path):
    trainer = Trainer(tiny(30, log_every=1), tmp_path, dataset=TranslatingTexture())
    trainer.fit()
    losses = [json.loads(line)["loss"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 30
    assert np.mean(losses[-8:]) < 0.7 * np.mean(losses[:8])


def test_resume_is_exact_and_metrics_do_not_repeat(tmp_path):
    ds = TranslatingTexture()
    full = Trainer(tiny(8), tmp_path / "full", dataset=ds)
    full.fit()
    ref = weights(full)

    part = Trainer(tiny(8), tmp_path / "part", dataset=ds)
    part.fit(stop_at=6)  # a clean stop writes a checkpoint at step 6
    ckpt = torch.load(tmp_path / "part" / CHECKPOINT, weights_only=True)
    assert ckpt["step"] == 6 and ckpt["data"]["position"] == 6
    resumed = Trainer(tiny(8), tmp_path / "part", dataset=ds)
    resumed.fit(resume=True)
    assert resumed.step == 8
    for k, v in weights(resumed).items():
        assert torch.equal(v, ref[k]), k
    a = (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()
    b = (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in b] == list(range(1, 9))
    for x, y in zip(a, b):
        x, y = json.loads(x), json.loads(y)
        assert x["loss"] == y["loss"] and x["lr"] == y["lr"]


def test_resume_after_crash_truncates_metrics(tmp_path):
    """Steps logged after the last checkpoint (and a torn line) are dropped and redone, not repeated."""
    ds = TranslatingTexture()
    Trainer(tiny(8), tmp_path, dataset=ds).fit(stop_at=4)
    at4 = (tmp_path / CHECKPOINT).read_bytes()
    Trainer(tiny(8), tmp_path, dataset=ds).fit(resume=True, stop_at=6)
    (tmp_path / CHECKPOINT).write_bytes(at4)  # crash at step 6 before its checkpoint was written
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 7, "lo')
    Trainer(tiny(8), tmp_path, dataset=ds).fit(resume=True)
    steps = [json.loads(x)["step"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 9))


def test_checkpoint_complete_and_atomic(tmp_path, monkeypatch):
    t = Trainer(tiny(4), tmp_path, dataset=TranslatingTexture())
    t.fit()
    ckpt = torch.load(tmp_path / CHECKPOINT, weights_only=True)
    assert {"model", "optimizer", "scheduler", "step", "rng", "data", "config", "model_config"} <= set(ckpt)
    assert {"torch", "numpy", "python"} <= set(ckpt["rng"])
    assert ckpt["step"] == 4 and ckpt["scheduler"]["last_epoch"] == 4
    before = (tmp_path / CHECKPOINT).read_bytes()

    def crash(obj, f):  # dies half-way through writing
        f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        atomic_save({"x": 1}, tmp_path / CHECKPOINT)
    assert (tmp_path / CHECKPOINT).read_bytes() == before


def test_export_rebuilds_and_freeze(tmp_path):
    conf = tiny(2, freeze=["vis_conf_head"])
    t = Trainer(conf, tmp_path, dataset=TranslatingTexture())
    head = t.model.updateformer.vis_conf_head.weight.clone()
    t.fit()
    assert torch.equal(head, t.model.updateformer.vis_conf_head.weight)
    assert is_frozen("updateformer.vis_conf_head.bias", ["vis_conf_head"]) and not is_frozen("fnet.conv1.weight", ["vis_conf_head"])
    t.export(tmp_path / "w.safetensors")
    state, config = read_state_dict(tmp_path / "w.safetensors")
    assert state["fnet.conv1.weight"].dtype == torch.float16
    model = build_model("offline", str(tmp_path / "w.safetensors"))
    assert model.latent_dim == 16 and model.model_resolution == (32, 32)
    assert torch.allclose(model.fnet.conv1.weight, t.model.fnet.conv1.weight, atol=1e-3)


def test_sampler_shards_and_restarts():
    a = ResumableSampler(10, seed=3, rank=0, world_size=2)
    b = ResumableSampler(10, seed=3, rank=1, world_size=2)
    ia, ib = [a.index(p) for p in range(5)], [b.index(p) for p in range(5)]
    assert sorted(ia + ib) == list(range(10))  # one epoch covers every item once
    late = iter(ResumableSampler(10, seed=3, rank=0, world_size=2, start=3))
    assert [next(late) for _ in range(4)] == [a.index(p) for p in range(3, 7)]


def test_online_model_trains_over_two_windows(tmp_path):
    conf = get_config("tiny", train={"steps": 2}, eval={"num_clips": 0}, data={"seq_len": 12})
    t = Trainer(conf, tmp_path, kind="online", dataset=TranslatingTexture(frames=12))
    batch = {k: v[None] for k, v in t.dataset[0].items()}
    *_, train_data = t.model(batch["video"], batch["trajectory"].new_zeros(1, 16, 3), iters=1, is_train=True)
    assert len(train_data[0]) == 2  # window 8, step 4 over 12 frames
    record = t.fit()
    assert record["step"] == 2 and np.isfinite(record["loss"])
    assert json.loads((tmp_path / "config.json").read_text())["model"]["kind"] == "online"


def test_cpu_bf16_autocast_matches_fp32_loss(tmp_path):
    """The small config's CPU speed setting (bf16 autocast, math attention) computes the same loss within bf16 noise."""
    ds = TranslatingTexture()
    batch = {k: v[None] for k, v in ds[0].items()}
    losses = {}
    for amp in ("fp32", "bf16"):
        t = Trainer(tiny(1, cpu_amp=amp), tmp_path / amp, dataset=ds)
        losses[amp] = float(t.loss(batch)["loss"].detach())
    assert losses["bf16"] != losses["fp32"]  # autocast did act
    assert abs(losses["bf16"] - losses["fp32"]) < 0.03 * losses["fp32"]


def test_data_workers_give_the_same_batches(tmp_path):
    """Clips made in a worker process are the ones the training process would have made (same order)."""
    conf = tiny(3)
    t = Trainer(conf, tmp_path, dataset=TranslatingTexture())
    inline = [b["video"] for _, b in zip(range(3), t.loader(start=2))]
    t.train_conf["num_workers"] = 1
    worker = [b["video"] for _, b in zip(range(3), t.loader(start=2))]
    assert all(torch.equal(a, b) for a, b in zip(inline, worker))
