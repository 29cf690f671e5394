"""Curriculum phases, the online/curriculum configs, and training for a wall-clock budget (GPU launcher on CPU)."""
import json
import time

import pytest
import torch

from cotracker3.checkpoint import build_model, read_state_dict
from cotracker3.training import RunError, Trainer, get_config
from cotracker3.training.budget import StepBudget, choose_renderer, device_config
from cotracker3.training.curriculum import phase_at, phases, skip_phases
from cotracker3.training.state import CHECKPOINT, load_training_checkpoint
from pipelines.train import main


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_curriculum(steps):
    return get_config("tiny", train={"steps": steps, "checkpoint_every": 100}, eval={"num_clips": 0}, curriculum=[
        {"until": 2, "data": {"seq_len": 6, "num_tracks": 8}},
        {"size": (40, 48), "data": {"seq_len": 10, "num_tracks": 12}, "batch_size": 2}])


def test_phases_of_configs():
    ph = phases(get_config("small_curriculum"))
    assert [(p.start, p.end, p.size, p.data["seq_len"]) for p in ph] == [
        (0, 1000, (128, 128), 8), (1000, 2000, (192, 192), 16), (2000, None, (256, 256), 24)]
    assert phase_at(ph, 999).index == 0 and phase_at(ph, 1000).index == 1 and phase_at(ph, 10**6).index == 2
    online = get_config("small_online")
    assert online["model"]["kind"] == "online" and online["model"]["args"]["model_resolution"] == (256, 256)
    assert [p.data["seq_len"] for p in phases(online)] == [16, 24, 24]
    single = phases(get_config("small"))
    assert len(single) == 1 and single[0].size == (128, 128) and single[0].end is None
    with pytest.raises(ValueError, match="'until' must increase"):
        phases(get_config("tiny", curriculum=[{"until": 5}, {"until": 3}, {}]))
    with pytest.raises(ValueError, match="only the last phase is open-ended"):
        phases(get_config("tiny", curriculum=[{"until": 5}]))


def test_skip_phases_for_a_warm_start():
    ph = phases(skip_phases(get_config("small_curriculum"), 1))
    assert [(p.start, p.end, p.size, p.data["seq_len"]) for p in ph] == [(0, 1000, (192, 192), 16), (1000, None, (256, 256), 24)]
    assert [(p.start, p.end) for p in phases(skip_phases(get_config("small_online"), 2))] == [(0, None)]
    assert skip_phases(get_config("small"), 0) == get_config("small")
    with pytest.raises(ValueError, match="cannot skip 1 of the 1"):
        skip_phases(get_config("small"), 1)


def test_resume_refuses_other_phases(tmp_path):
    Trainer(tiny_curriculum(3), tmp_path).fit(stop_at=1)
    with pytest.raises(RunError, match="other curriculum phases"):
        Trainer(skip_phases(tiny_curriculum(3), 1), tmp_path).fit(resume=True)


def test_curriculum_switches_phase_and_resumes_exactly(tmp_path):
    full = Trainer(tiny_curriculum(4), tmp_path / "full")
    assert full.dataset.seq_len == 6 and full.dataset.crop_size == (32, 32)
    full.fit()
    assert full.dataset.seq_len == 10 and full.dataset.crop_size == (40, 48) and full.clips_done == 2 + 2 * 2
    ckpt = load_training_checkpoint(tmp_path / "full" / CHECKPOINT)
    assert ckpt["data"] == {"phase": 1, "position": 4}

    part = Trainer(tiny_curriculum(4), tmp_path / "part")
    part.fit(stop_at=3)  # stops inside phase 1, after one of its batches
    resumed = Trainer(tiny_curriculum(4), tmp_path / "part")
    resumed.fit(resume=True)
    for k, v in resumed.model.state_dict().items():
        assert torch.equal(v, full.model.state_dict()[k]), k
    a = [json.loads(x) for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in a] == [r["loss"] for r in b] and [r["step"] for r in b] == [1, 2, 3, 4]


def test_step_budget_fits_the_remaining_time():
    budget = StepBudget(1.0, warmup=1, measure_steps=2, measure_s=10.0)
    assert budget.total_steps(0) is None and budget.total_steps(1) is None  # warm-up, then the clock starts
    time.sleep(0.05)
    assert budget.total_steps(2) is None
    time.sleep(0.05)
    total = budget.total_steps(3)  # ~0.05 s/step, ~0.9 s left
    assert 3 + 8 <= total <= 3 + 20
    assert budget.total_steps(4) is None  # decided once


def test_device_config_on_gpu_only():
    conf = get_config("small")
    cpu = device_config(get_config("small"), torch.device("cpu"))
    assert "gpu" not in cpu and cpu["train"]["batch_size"] == 1 and "device" not in cpu["data"]
    gpu = device_config(conf, torch.device("cuda", 0))
    assert gpu["train"]["batch_size"] == 16 and gpu["train"]["num_workers"] == 0 and gpu["data"]["device"] == "cuda:0"
    workers = device_config(get_config("small"), torch.device("cuda", 0), {"device": "cpu", "workers": 7})
    assert workers["data"]["device"] == "cpu" and workers["train"]["num_workers"] == 7


def test_choose_renderer_measures_both_sources():
    """The renderer choice compares measured clip rates (here both sources are this CPU: the per-core rate
    times the workers wins whenever there are two or more cores for workers)."""
    r = choose_renderer(get_config("tiny"), torch.device("cpu"))
    assert r["gpu_clips_per_s"] > 0 and r["cpu_clips_per_s"] >= 0
    assert r["device"] == "cpu"
    assert ("workers" in r) == (r["cpu_clips_per_s"] > r["gpu_clips_per_s"])


def test_budget_run_trains_evaluates_exports(tmp_path, capsys):
    out = tmp_path / "out"
    t0 = time.perf_counter()
    code = main(["--config", "tiny", "--budget-minutes", "0.2", "--device", "cpu", "--threads", "1", "-o", str(out)])
    wall = time.perf_counter() - t0
    assert code == 0, capsys.readouterr().err
    m = json.loads((out / "metrics.json").read_text())
    assert m["steps"] >= 3 and m["steps"] == m["schedule_steps"] or m["train_seconds"] >= 0.2 * 60 * 0.85
    assert m["train_seconds"] <= 0.2 * 60 * 0.85 + 15 and wall < 0.2 * 60 + 60
    assert m["clips"] == m["steps"] and m["batch_size"] == 1 and m["amp"] == "fp32"
    assert 0.0 <= m["eval"]["average_jaccard"] <= 1.0
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == m["steps"]
    if m["steps"] == m["schedule_steps"]:  # the fitted one-cycle schedule ran to its end
        assert records[-1]["lr"] < 0.01 * get_config("tiny")["train"]["lr"]
    state, config = read_state_dict(out / m["weights"])
    assert m["weights"] == "cotracker3_tiny_offline.safetensors" and state["fnet.conv1.weight"].dtype == torch.float16
    assert build_model("offline", str(out / m["weights"])).latent_dim == config["latent_dim"] == 16
    assert f"{m['steps']} steps" in capsys.readouterr().out


@pytest.mark.parametrize("argv,needle", [
    (["--resume"], "drop --resume"),
    (["--steps", "5"], "drop --steps"),
    (["--device", "cuda"], "no CUDA device"),
])
def test_budget_cli_refuses(tmp_path, capsys, monkeypatch, argv, needle):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code = main(["--config", "tiny", "--budget-minutes", "1", "-o", str(tmp_path / "out"), *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "out").exists()
