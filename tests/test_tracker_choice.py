"""`--tracker auto`: official CoTracker3 weights when present, else the best tracker shipped (by its stored score)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cotracker3 import CoTrackerThreeOffline
from cotracker3 import checkpoint as ckpt
from pipelines import relabel
from sfm_tracks.tracking.choice import choose_tracker, make_provider
from sfm_tracks.tracking.providers import LucasKanadeProvider

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(latent_dim=32, hidden_size=48, corr_hidden=32, num_virtual_tracks=4, space_depth=1, model_resolution=(64, 64), window_len=8)


@pytest.fixture
def no_official(tmp_path, monkeypatch):
    """An empty torch hub cache, downloads off (and any attempt fails the test)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("SFM_TRACKS_NO_DOWNLOAD", "1")

    def no_network(*a, **k):
        raise AssertionError("auto must not try a download when SFM_TRACKS_NO_DOWNLOAD=1")

    monkeypatch.setattr(ckpt.urllib.request, "urlopen", no_network)
    return tmp_path


def _shipped(tmp_path, monkeypatch, scores):
    """Replace the packaged weights by a tiny model carrying `scores` (None: no score stored)."""
    d = tmp_path / "embedded"
    d.mkdir()
    torch.manual_seed(0)
    path = d / ckpt.EMBEDDED_FILES["offline"]
    ckpt.save_weights(CoTrackerThreeOffline(**SMALL), path, config=SMALL, half=True)
    if scores is not None:
        ckpt.write_metadata(path, score_vs_lk=json.dumps(scores))
    monkeypatch.setattr(ckpt, "EMBEDDED_DIR", d)
    return path


def test_shipped_weights_store_their_model_card_score():
    scores = ckpt.score_vs_lk(ckpt.EMBEDDED_DIR / ckpt.EMBEDDED_FILES["offline"])
    by_metric = {s["metric"]: (s["ours"], s["lk"]) for s in scores}
    assert by_metric == {"synthetic TAP-Vid AJ x100": (48.05, 59.01), "BADJA bear PCK proxy": (0.732, 0.707)}
    card = (ckpt.EMBEDDED_DIR / "MODEL_CARD.md").read_text()
    assert "score_vs_lk" in card and "AJ 48.05" in card and "**0.732** (Lucas-Kanade 0.707)" in card


def test_auto_without_official_weights_picks_lucas_kanade(no_official):
    choice = choose_tracker("auto")
    assert choice.name == "lk" and choice.checkpoint is None
    assert "no official CoTracker3 weights" in choice.reason and "48.05 vs LK 59.01" in choice.reason
    provider = make_provider("auto")
    assert isinstance(provider, LucasKanadeProvider) and provider.choice.name == "lk"


def test_auto_with_official_weights_in_the_hub_cache(no_official):
    official = no_official / "torch" / "hub" / "checkpoints" / "scaled_offline.pth"
    official.parent.mkdir(parents=True)
    official.write_bytes(b"dummy")  # the choice only needs the file to be there
    choice = choose_tracker("auto")
    assert choice.name == "cotracker3" and choice.checkpoint == "default" and str(official) in choice.reason
    assert "official CoTracker3 offline weights from the torch hub cache" in choice.reason
    assert ckpt.resolve_checkpoint("offline", choice.checkpoint)[0] == official  # the provider loads that file


def test_auto_explicit_checkpoint_and_explicit_names(no_official, tmp_path):
    assert choose_tracker("auto", str(tmp_path / "w.pth")).name == "cotracker3"
    assert choose_tracker("lk").name == "lk"
    assert choose_tracker("cotracker3-online").checkpoint == "default"
    with pytest.raises(ValueError, match="tracker must be one of"):
        choose_tracker("sift")


@pytest.mark.parametrize("ours,expected", [(0.9, "cotracker3"), (0.5, "lk"), (None, "lk")])
def test_auto_follows_the_stored_score(no_official, tmp_path, monkeypatch, ours, expected):
    scores = None if ours is None else [{"metric": "m", "ours": ours, "lk": 0.7, "higher_is_better": True},
                                         {"metric": "err px", "ours": 1.0, "lk": 2.0, "higher_is_better": False}]
    path = _shipped(tmp_path, monkeypatch, scores)
    choice = choose_tracker("auto")
    assert choice.name == expected
    if expected == "cotracker3":
        assert choice.checkpoint == str(path) and "beats Lucas-Kanade" in choice.reason
        assert str(path) in make_provider("auto").checkpoint_source  # it loads and tracks with those weights
    elif ours is None:
        assert "no score against Lucas-Kanade" in choice.reason


def test_write_metadata_keeps_tensors_and_mode(tmp_path):
    from safetensors.torch import load_file

    path = tmp_path / "w.safetensors"
    torch.manual_seed(0)
    ckpt.save_weights(CoTrackerThreeOffline(**SMALL), path, config=SMALL, half=True)
    os.chmod(path, 0o644)
    before = load_file(str(path))
    ckpt.write_metadata(path, score_vs_lk=json.dumps([{"metric": "m", "ours": 1, "lk": 2}]))
    after = load_file(str(path))
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) and before[k].dtype == after[k].dtype for k in before)
    assert json.loads(ckpt.read_metadata(path)["config"])["latent_dim"] == 32  # earlier metadata kept
    assert ckpt.score_vs_lk(path)[0]["higher_is_better"] is True and (path.stat().st_mode & 0o777) == 0o644


def test_relabel_resolves_auto_once(no_official):
    teachers = relabel.build_teachers(["auto", "lk"])
    assert [n for n, _ in teachers] == ["lk"]


NO_TORCH = """
import sys
import numpy as np
import pipelines.reconstruct, sfm_tracks.pipeline
import sfm_tracks
from pathlib import Path
from cotracker3 import CheckpointError
from cotracker3.checkpoint import hub_cache_dir
from sfm_tracks.tracking.choice import make_provider

provider = make_provider("auto")
assert provider.choice.name == "lk", provider.choice
rng = np.random.default_rng(0)
base = np.repeat(rng.integers(0, 256, (48, 64, 1), np.uint8), 3, axis=2)
frames = np.stack([np.roll(base, t, axis=1) for t in range(4)])
tracks = provider(frames, np.array([[0, 20.0, 20.0], [3, 40.0, 30.0]], np.float32))
assert tracks.xy.shape == (4, 2, 2)
no_torch_hub = hub_cache_dir()
assert "torch" not in sys.modules, "torch imported"
assert sfm_tracks.VGGSfMTrackerAdapter.__name__ == "VGGSfMTrackerAdapter" and "torch" in sys.modules
from cotracker3 import CoTrackerPredictor, CoTrackerThreeOffline
import torch
assert hub_cache_dir() == Path(torch.hub.get_dir()) / "checkpoints" == no_torch_hub, no_torch_hub
"""


def test_lucas_kanade_runs_without_torch(no_official):
    """Importing torch costs ~2 s of every short run: the CLI module, the pipeline, `auto` resolving to
    Lucas-Kanade (no official weights here) and LK tracking never import it; the hub cache it looked in is torch's;
    the VGGSfM adapter and CoTracker3's models still import it."""
    res = subprocess.run([sys.executable, "-c", NO_TORCH], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
