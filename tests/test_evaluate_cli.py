"""pipelines.evaluate end to end on a tiny TAP-Vid-layout pickle: LK tracks pure translation."""
import json
import pickle

import numpy as np
import torch

from cotracker3.training import Trainer, get_config
from pipelines.evaluate import main
from test_training import TranslatingTexture


def _pickle(path, n=2, size=64, frames=8):
    data = {}
    for i in range(n):
        s = TranslatingTexture(size=size, frames=frames, tracks=12)[i]
        video = s["video"].permute(0, 2, 3, 1).round().clamp(0, 255).to(torch.uint8).numpy()
        points = ((s["trajectory"].numpy() + 0.5) / size).transpose(1, 0, 2)  # TAP-Vid: normalised, pixel edges
        data[f"clip{i}"] = {"video": video, "points": points, "occluded": ~s["visibility"].numpy().T}
    path.write_bytes(pickle.dumps(data))
    return path


def test_lk_and_checkpoint(tmp_path):
    pkl = _pickle(tmp_path / "set.pkl")
    assert main(["--checkpoint", "lk", "--data", str(pkl), "-o", str(tmp_path / "out" / "lk.json")]) == 0
    lk = json.loads((tmp_path / "out" / "lk.json").read_text())
    # (texture resized 64 -> 256 by the reader: LK follows the integer-pixel motion closely)
    assert lk["average"]["average_pts_within_thresh"] > 0.9 and set(lk["per_video"]) == {"clip0", "clip1"}

    t = Trainer(get_config("tiny", train={"steps": 1}, eval={"num_clips": 0}), tmp_path / "run",
                dataset=TranslatingTexture())
    t.fit()
    t.export(tmp_path / "w.safetensors")
    assert main(["--checkpoint", str(tmp_path / "w.safetensors"), "--data", str(pkl), "--iters", "1",
                 "--query-mode", "strided", "-o", str(tmp_path / "w.json")]) == 0
    res = json.loads((tmp_path / "w.json").read_text())
    assert set(res["per_video"]) == {"clip0", "clip1"}
    assert 0 <= res["average"]["average_jaccard"] <= 1 and np.isfinite(res["average"]["occlusion_accuracy"])

    # the same weights streamed as the online model (the cotracker3-online teacher)
    assert main(["--checkpoint", str(tmp_path / "w.safetensors"), "--model", "online", "--data", str(pkl),
                 "--iters", "1", "-o", str(tmp_path / "online.json")]) == 0
    online = json.loads((tmp_path / "online.json").read_text())
    assert "online" in online["tracker"] and set(online["per_video"]) == {"clip0", "clip1"}
    assert 0 <= online["average"]["average_jaccard"] <= 1


def test_predict_fn_accepts_tapvid_edge_queries():
    """TAP-Vid pixels run to W at the far edge (points * W); the predictor allows W - 0.5."""
    from cotracker3.predictor import CoTrackerPredictor
    from cotracker3.training import model_config
    from cotracker3.training.evaluation import cotracker_predict_fn

    predictor = CoTrackerPredictor(None, **{k: v for k, v in model_config(get_config("tiny")).items() if k != "window_len"})
    video = np.zeros((4, 32, 32, 3), np.uint8)
    queries = np.array([[0, 32.0, 32.0], [1, 0.0, 5.0]], np.float32)
    tracks, vis = cotracker_predict_fn(predictor, iters=1)(video, queries)
    assert tracks.shape == (4, 2, 2) and vis.shape == (4, 2)
    assert np.allclose(tracks[0, 0], 31.5)  # the clamped query itself at its frame


def test_provider_predict_fn_accepts_tapvid_edge_queries():
    from pipelines.evaluate import provider_predict_fn
    from sfm_tracks import LucasKanadeProvider

    video = (np.random.default_rng(0).random((4, 32, 32, 3)) * 255).astype(np.uint8)
    tracks, vis = provider_predict_fn(LucasKanadeProvider())(video, np.array([[0, 32.0, 32.0], [1, 0.0, 5.0]], np.float32))
    assert tracks.shape == (4, 2, 2) and np.allclose(tracks[0, 0], 31.5) and vis[0, 0]
