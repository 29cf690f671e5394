"""pipelines/recipe.py: stages advance in order, every stint is scored once, and a stopped recipe resumes
where it was (the CLI calls are replaced by fakes that write what the real ones write)."""
import json
import os
import time

import pytest
import torch

import pipelines.recipe as recipe
from cotracker3.training.state import CHECKPOINT


@pytest.fixture
def fake_cli(monkeypatch, tmp_path):
    calls = []
    data = tmp_path / "data"
    for folder, name in [("cotracker_videos", "apple.mp4"), ("cotracker_videos", "bear.mp4"), ("davis_videos", "goat.mp4")]:
        (data / folder).mkdir(parents=True, exist_ok=True)
        (data / folder / name).write_bytes(b"")

    def cli(*args, log):
        args = [str(a) for a in args]
        calls.append(args)
        if args[0] == "pipelines.train":
            run, steps = args[args.index("-o") + 1], int(args[args.index("--steps") + 1])
            ckpt = f"{run}/{CHECKPOINT}"
            step = torch.load(ckpt, weights_only=True)["step"] if "--resume" in args else 0
            step = min(steps, step + 3)  # each stint trains 3 steps, in 0.1 s
            time.sleep(0.1)
            os.makedirs(run, exist_ok=True)
            torch.save({k: {} for k in ("model", "optimizer", "scheduler", "rng", "data", "config", "model_config")}
                       | {"step": step, "kind": "offline"}, ckpt)
            open(args[args.index("--export") + 1], "w").close()
        elif args[0] == "pipelines.evaluate":
            out = args[args.index("-o") + 1]
            avg = {"pck@0.2sqrt(bbox)_proxy": 0.7, "pck@10px": 0.3, "average_jaccard": 0.5, "pts_within_2": 0.6}
            open(out, "w").write(json.dumps({"average": avg}))

    monkeypatch.setattr(recipe, "cli", cli)
    return calls, data


def test_recipe_runs_its_stages_in_stints_and_resumes(fake_cli, tmp_path):
    calls, data = fake_cli
    out = tmp_path / "recipe"
    init = tmp_path / "init.safetensors"
    init.write_bytes(b"")
    base = ["-o", str(out), "--init", str(init), "--data", str(data), "--synthetic-steps", "5", "--pseudo-steps", "3"]
    assert recipe.main(base + ["--minutes", "0.001"]) == 0  # one stint, then the time is up
    assert json.loads((out / "state.json").read_text())["stage"] == "synthetic"
    assert [c[0] for c in calls] == ["pipelines.train", "pipelines.evaluate", "pipelines.evaluate"]
    assert "--init" in calls[0] and "--resume" not in calls[0]
    assert recipe.main(base) == 0  # resumed: the rest of stage 1, relabel, stage 2
    trains = [c for c in calls if c[0] == "pipelines.train"]
    assert len(trains) == 3 and "--resume" in trains[1] and "--init" in trains[2]  # stage 2 starts from stage 1
    relabel = [c for c in calls if c[0] == "pipelines.relabel"]
    assert len(relabel) == 1 and not any("bear" in a for a in relabel[0]) and any("goat" in a for a in relabel[0])
    assert f"lk,cotracker3={out / 'synthetic.safetensors'}" in relabel[0]
    curve = [json.loads(x) for x in (out / "curve.jsonl").read_text().splitlines()]
    assert [(c["stage"], c["step"]) for c in curve] == [("synthetic", 3), ("synthetic", 5), ("pseudo", 3)]
    assert not any(c["beats_shipped"] for c in curve)  # 0.7 proxy and AJ 50 against the shipped 0.732 and 48.05
    assert json.loads((out / "state.json").read_text())["stage"] == "done"
    n = len(calls)
    assert recipe.main(base) == 0 and len(calls) == n  # done: nothing more runs


def test_recipe_refuses_missing_init(tmp_path, capsys):
    assert recipe.main(["-o", str(tmp_path / "r"), "--init", str(tmp_path / "nope.safetensors")]) == 2
    assert "no such weights file" in capsys.readouterr().err


def test_recipe_can_start_from_a_trained_stage_one_model(fake_cli, tmp_path):
    calls, data = fake_cli
    init = tmp_path / "gpu.safetensors"
    init.write_bytes(b"weights")
    out = tmp_path / "recipe"
    assert recipe.main(["-o", str(out), "--init", str(init), "--data", str(data), "--synthetic-steps", "0",
                        "--pseudo-steps", "3"]) == 0
    assert (out / "synthetic.safetensors").read_bytes() == b"weights"
    assert [c[0] for c in calls][:2] == ["pipelines.relabel", "pipelines.train"]
    assert recipe.main(["-o", str(tmp_path / "r2"), "--synthetic-steps", "-1"]) == 2
