"""Training data plumbing: dataset registry, a resumable sampler, batching and queries.

Datasets yield the sample contract of ``cotracker3.data`` (video (T,3,H,W) float 0..255,
trajectory (T,N,2), visibility (T,N), valid (T,N), query_frame (N,)). Which dataset is used is a
config key (``conf["data"]["name"]``) so other stages (e.g. pseudo-labels) only register a factory.
"""
from __future__ import annotations

from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch.utils.data import Sampler

DATASETS: dict[str, Callable[..., torch.utils.data.Dataset]] = {}


def register_dataset(name: str, factory: Callable[..., torch.utils.data.Dataset]) -> None:
    """Make ``conf["data"]["name"] == name`` build ``factory(**other data keys, seed=...)``."""
    DATASETS[name] = factory


def _synthetic(seq_len: int, num_tracks: int, crop_size, seed: int, **kw):
    from cotracker3.data.dataset import SyntheticTrackingDataset

    return SyntheticTrackingDataset(seq_len=seq_len, num_tracks=num_tracks, crop_size=tuple(crop_size), seed=seed, **kw)


register_dataset("synthetic", _synthetic)


def _pseudo(**kw):
    from cotracker3.data.pseudo_labels import pseudo_dataset

    return pseudo_dataset(**kw)


register_dataset("pseudo", _pseudo)


def build_dataset(data_conf: dict, crop_size, seed: int):
    """Instantiate the configured dataset; clips are rendered at the model resolution."""
    conf = dict(data_conf)
    name = conf.pop("name")
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; registered: {sorted(DATASETS)}")
    conf.setdefault("crop_size", tuple(crop_size))
    return DATASETS[name](seed=seed, **conf)


class ResumableSampler(Sampler):
    """Endless shuffled indices, sharded over ranks, that can restart at any position.

    Position p of rank r is element ``r + world * (p mod m)`` of the permutation of epoch
    ``p div m`` (m = len // world), seeded by (seed, epoch): the whole data-sampling state is p.
    """

    def __init__(self, length: int, seed: int = 0, rank: int = 0, world_size: int = 1, start: int = 0):
        if length < world_size:
            raise ValueError(f"dataset of {length} items cannot feed {world_size} processes")
        self.length, self.seed, self.rank, self.world = length, seed, rank, world_size
        self.per_rank = length // world_size
        self.start = start

    def index(self, p: int) -> int:
        epoch, k = divmod(p, self.per_rank)
        perm = torch.randperm(self.length, generator=torch.Generator().manual_seed(self.seed * 1_000_003 + epoch))
        return int(perm[self.rank + self.world * k])

    def __iter__(self) -> Iterator[int]:
        p = self.start
        while True:
            yield self.index(p)
            p += 1

    def __len__(self) -> int:  # endless; DataLoader only needs a number
        return 2**62


def collate(samples: list[dict]) -> dict:
    """Stack the tensor fields of the contract into a batch (extra fields are dropped)."""
    keys = ("video", "trajectory", "visibility", "valid", "query_frame")
    return {k: torch.stack([torch.as_tensor(s[k]) for s in samples]) for k in keys}


def resize_batch(batch: dict, size_hw) -> dict:
    """Bring video and tracks to the model resolution (tracks: pixel-centre convention)."""
    B, T, C, H, W = batch["video"].shape
    if (H, W) == tuple(size_hw):
        return batch
    h, w = size_hw
    video = F.interpolate(batch["video"].flatten(0, 1), (h, w), mode="bilinear", align_corners=False)
    scale = torch.tensor([w / W, h / H])
    traj = (batch["trajectory"] + 0.5) * scale - 0.5
    return dict(batch, video=video.unflatten(0, (B, T)), trajectory=traj)


def make_queries(batch: dict) -> torch.Tensor:
    """(B, N, 3) queries (t, x, y): each track at its ``query_frame``."""
    t = batch["query_frame"].long()  # (B, N)
    xy = torch.gather(batch["trajectory"], 1, t[:, None, :, None].expand(-1, 1, -1, 2))[:, 0]
    return torch.cat([t[..., None].to(xy.dtype), xy], dim=-1)

