"""Training configurations as plain dicts (hloc style): model, data, optimisation, evaluation.

Optimisation defaults follow the official ``train_on_kubric.py``: AdamW (lr 5e-4, weight decay
1e-5, eps 1e-8), OneCycleLR over ``steps + 100`` steps (pct_start 0.05, cosine annealing, no
momentum cycling), gradient-norm clipping at 1.0, 4 refinement iterations, batch size 1 per GPU.
Our small configs use warmup-stable-decay instead: long CPU runs go in stints and get extended, and
WSD's constant phase extends without changing a single past learning rate (training/schedule.py).
"""
from __future__ import annotations

import copy

TRAIN_DEFAULTS = {
    "steps": 200_000,
    "batch_size": 1,  # per process
    "lr": 5e-4,
    "weight_decay": 1e-5,
    "eps": 1e-8,
    "schedule": "onecycle",  # or "wsd" (warmup-stable-decay); training/schedule.py
    "pct_start": 0.05,  # warm-up share
    "schedule_extra_steps": 100,  # one-cycle: OneCycleLR total = steps + this, as the official script
    "decay_frac": 0.2,  # wsd: the last share of the steps decays (and how an extended run decays)
    "floor": 0.0,  # wsd: lr / peak at the end
    "clip_grad_norm": 1.0,
    "iters": 4,
    "amp": "bf16",  # autocast dtype on CUDA ("bf16" or "fp32")
    "cpu_amp": "fp32",  # the same on a CPU (bf16 pays where the CPU has bf16 matmuls, e.g. AVX512-BF16)
    "seed": 0,
    "num_workers": 0,  # DataLoader worker processes making clips while the model trains
    "prefetch": 2,  # batches queued per worker
    "freeze": [],  # parameter-name components/prefixes to keep fixed, e.g. ["vis_conf_head"]
    "loss": {  # passed to cotracker3.losses.sequence_losses, plus the terms summed into the loss
        "terms": ["track_visible", "track_occluded", "visibility", "confidence"],
        "gamma": 0.8,
        "huber_delta": 6.0,
        "conf_thresh": 12.0,
    },
    "log_every": 10,
    "checkpoint_every": 500,
    "eval_every": 2000,  # 0: never during training (always at the end when eval is configured)
}

# Dataset entries name a factory in cotracker3.training.data.DATASETS; the rest are its kwargs.
SYNTHETIC = {"name": "synthetic", "seq_len": 24, "num_tracks": 256}
EVAL_DEFAULTS = {"num_clips": 4, "seed": 1_000_000, "num_frames": 24, "size": (256, 256), "num_tracks": 64,
                 "query_mode": "first", "iters": 6}

FULL = {  # official CoTracker3 architecture (25.4 M parameters)
    "model": {"kind": "offline", "args": {"model_resolution": (384, 512)},
              "window_len": {"offline": 60, "online": 16}},
    "data": dict(SYNTHETIC, seq_len=60, num_tracks=512),
    "train": dict(TRAIN_DEFAULTS),
    "eval": dict(EVAL_DEFAULTS),
    "gpu": {},  # budget runs on CUDA: the official batch of 1 clip per GPU
}

SMALL = {  # the embedded default: 3.3 M parameters, trainable on a 2-core CPU at 128x128, 8 frames
    "model": {"kind": "offline",
              "args": {"model_resolution": (128, 128), "latent_dim": 32, "hidden_size": 128, "corr_hidden": 128,
                       "space_depth": 2, "num_virtual_tracks": 32},
              "window_len": {"offline": 60, "online": 16}},
    "data": dict(SYNTHETIC, seq_len=8, num_tracks=48),
    "train": dict(TRAIN_DEFAULTS, steps=800, schedule="wsd", schedule_extra_steps=0, lr=5e-4, log_every=5,
                  checkpoint_every=25, eval_every=100, cpu_amp="bf16", num_workers=1),
    "eval": dict(EVAL_DEFAULTS, num_clips=4, num_frames=16, size=(128, 128)),
    "gpu": {"train": {"batch_size": 16}},  # budget runs on CUDA (bf16; see training/budget.py)
}

# Curriculum (issue 14): short clips first, then 16- and 24-frame clips at 192 and 256 px. The model
# works at 256x256 (what the predictor resizes videos to); phase 1 feeds it 128 px clips, so its
# motion features see half-scale motion there. ``until``: absolute step ends (see curriculum.py).
CURRICULUM = [
    {"until": 1000, "size": (128, 128), "data": {"seq_len": 8, "num_tracks": 48}},
    {"until": 2000, "size": (192, 192), "data": {"seq_len": 16, "num_tracks": 64}},
    {"size": (256, 256), "data": {"seq_len": 24, "num_tracks": 96}},
]
SMALL_CURRICULUM = {
    "model": dict(SMALL["model"], args=dict(SMALL["model"]["args"], model_resolution=(256, 256))),
    "data": dict(SYNTHETIC, seq_len=8, num_tracks=48),
    "curriculum": CURRICULUM,
    "train": dict(SMALL["train"], steps=3000, eval_every=500),
    "eval": dict(EVAL_DEFAULTS, num_clips=4, num_frames=24, size=(256, 256)),
    "gpu": {"train": {"batch_size": 8}},
}
# The second teacher of the paper's kind: the online (sliding-window) model, window 16 / step 8. Its
# first phase uses one full window; 24-frame clips then span two overlapping windows.
SMALL_ONLINE = dict(SMALL_CURRICULUM, model=dict(SMALL_CURRICULUM["model"], kind="online"), curriculum=[
    {"until": 1000, "size": (128, 128), "data": {"seq_len": 16, "num_tracks": 48}},
    {"until": 2000, "size": (192, 192), "data": {"seq_len": 24, "num_tracks": 64}},
    {"size": (256, 256), "data": {"seq_len": 24, "num_tracks": 96}},
])

TINY = {  # for tests: trains in seconds on a CPU
    "model": {"kind": "offline",
              "args": {"model_resolution": (32, 32), "latent_dim": 16, "hidden_size": 32, "corr_hidden": 32,
                       "space_depth": 1, "num_virtual_tracks": 4, "corr_levels": 2, "corr_radius": 2},
              "window_len": {"offline": 8, "online": 8}},
    "data": dict(SYNTHETIC, seq_len=8, num_tracks=16),
    "train": dict(TRAIN_DEFAULTS, steps=40, schedule_extra_steps=0, lr=2e-3, log_every=1,
                  checkpoint_every=10, eval_every=0),
    "eval": dict(EVAL_DEFAULTS, num_clips=1, num_frames=8, size=(32, 32), num_tracks=8, iters=4),
    "gpu": {"train": {"batch_size": 4}},
}

CONFIGS = {"tiny": TINY, "small": SMALL, "small_curriculum": SMALL_CURRICULUM, "small_online": SMALL_ONLINE,
           "full": FULL}

# Stage "pseudo": fine-tuning on pseudo-labelled real videos, as the official train_on_real_data.py
# (README command): AdamW lr 5e-5, weight decay 1e-5, OneCycleLR over steps + 100 with no warm-up
# (pct_start 0, cosine), gradient clipping at 10, 15k steps, the visibility/confidence head frozen and
# only the visible-track loss (labels have no trustworthy occlusion). Model and clip sizes stay the
# base config's. data.labels: a relabel OUTDIR.
PSEUDO = {
    "data": {"name": "pseudo", "labels": None, "samples_per_video": 100, "synthetic_fraction": 0.0,
             "filters": ["cycle", "geometric"]},  # which of the relabel filters' verdicts to honour
    "train": {"steps": 15_000, "lr": 5e-5, "weight_decay": 1e-5, "pct_start": 0.0, "schedule_extra_steps": 100,
              "clip_grad_norm": 10.0, "freeze": ["vis_conf_head"], "loss": {"terms": ["track_visible"]}},
}
STAGES = {"synthetic": {}, "pseudo": PSEUDO}


def merge(base: dict, override: dict) -> dict:
    """Recursive dict update returning a new dict (override wins; nested dicts merge)."""
    out = copy.deepcopy(base)
    for k, v in (override or {}).items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def get_config(name: str, stage: str = "synthetic", **overrides) -> dict:
    """A deep copy of a named config for a training stage with nested overrides,
    e.g. get_config("tiny", train={"steps": 8}) or get_config("small", "pseudo", data={"labels": "labels/"})."""
    if name not in CONFIGS:
        raise ValueError(f"unknown config {name!r}; choose from {sorted(CONFIGS)}")
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; choose from {sorted(STAGES)}")
    base = CONFIGS[name]
    if stage == "pseudo":  # seq_len / num_tracks stay the base config's; the synthetic-only keys go
        base = dict(base, data={k: v for k, v in base["data"].items() if k in ("seq_len", "num_tracks")})
    return merge(merge(base, STAGES[stage]), overrides)


def model_config(conf: dict, kind: str | None = None) -> dict:
    """Constructor kwargs of the model (what save_weights stores and build_model rebuilds)."""
    kind = kind or conf["model"]["kind"]
    args = dict(conf["model"]["args"], window_len=conf["model"]["window_len"][kind])
    args["model_resolution"] = list(args.get("model_resolution", (384, 512)))
    return args
