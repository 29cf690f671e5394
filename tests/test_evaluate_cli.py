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
    lk = main(["--checkpoint", "lk", "--data", str(pkl), "-o", str(tmp_path / "lk.json")])
    # (texture resized 64 -> 256 by the reader: LK follows the integer-pixel motion closely)
    assert lk["average"]["average_pts_within_thresh"] > 0.9
    assert json.loads((tmp_path / "lk.json").read_text())["average"] == lk["average"]

    t = Trainer(get_config("tiny", train={"steps": 1}, eval={"num_clips": 0}), tmp_path / "run",
                dataset=TranslatingTexture())
    t.fit()
    t.export(tmp_path / "w.safetensors")
    res = main(["--checkpoint", str(tmp_path / "w.safetensors"), "--data", str(pkl), "--iters", "1",
                "--query-mode", "strided"])
    assert set(res["per_video"]) == {"clip0", "clip1"}
    assert 0 <= res["average"]["average_jaccard"] <= 1 and np.isfinite(res["average"]["occlusion_accuracy"])
