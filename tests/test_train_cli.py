"""train.py and training checkpoints: weights_only loading, extending a run, one clear line for bad input."""
import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cotracker3.training import Trainer, get_config
from cotracker3.training.state import CHECKPOINT, load_training_checkpoint, rng_state, set_rng_state
from pipelines.train import main

ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Payload:
    """Unpickling this runs code: it creates the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err.strip().splitlines()


def tiny_run(capsys, run, steps):
    code, err = run_cli(capsys, "--config", "tiny", "--steps", steps, "-o", run, "--threads", 1,
                        *(["--resume"] if (run / CHECKPOINT).exists() else []))
    assert code == 0, err
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def test_rng_state_is_plain_and_restores():
    import random

    import numpy as np

    state = rng_state()
    a = (torch.rand(3), np.random.rand(3), random.random())
    torch.save(state, "/dev/null")  # serialisable
    set_rng_state(state)
    b = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
    assert isinstance(state["numpy"]["keys"], torch.Tensor) and isinstance(state["python"]["internal"], list)


def test_extend_run_continues_without_warm_restart(tmp_path, capsys):
    """The issue's case: --steps 40, then --steps 60 --resume. Steps 1..60 are logged once, the learning rate
    never rises above its value at the resume, and the loss stays at its pre-resume level (the rebuilt
    one-cycle schedule used to jump from 8e-9 to 4.9e-4 and the loss from 0.47 to 5.6)."""
    run = tmp_path / "run"
    first = tiny_run(capsys, run, 40)
    ckpt = load_training_checkpoint(run / CHECKPOINT)  # weights_only=True inside
    assert ckpt["step"] == 40 and ckpt["scheduler"]["requested"] == 40 and len(ckpt["scheduler"]["pieces"]) == 1
    records = tiny_run(capsys, run, 60)
    assert [r["step"] for r in records] == list(range(1, 61)) and records[:40] == first
    lr_at_resume = first[-1]["lr"]
    assert all(r["lr"] <= lr_at_resume * (1 + 1e-9) for r in records[40:])
    before = sum(r["loss"] for r in first[-10:]) / 10
    after = sum(r["loss"] for r in records[40:]) / 20
    assert after < 1.3 * before, (before, after)
    assert load_training_checkpoint(run / CHECKPOINT)["step"] == 60


@pytest.mark.parametrize("how", ["torch.save", "pickle"])
def test_planted_checkpoint_runs_nothing(tmp_path, capsys, how):
    run, marker = tmp_path / "run", tmp_path / "pwned"
    run.mkdir()
    obj = {"model": {}, "step": 1, "payload": Payload(marker)}
    if how == "torch.save":
        torch.save(obj, run / CHECKPOINT)
    else:
        (run / CHECKPOINT).write_bytes(pickle.dumps(obj))
    code, err = run_cli(capsys, "--config", "tiny", "-o", run, "--resume")
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("error: cannot load training checkpoint") and "pickled Python objects" in err[0]
    assert not marker.exists()


def planted(kind, run):
    run.mkdir()
    path = run / CHECKPOINT
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(b"not a checkpoint at all\n" * 10)
    elif kind == "weights only":
        torch.save({"w": torch.zeros(2)}, path)


@pytest.mark.parametrize("case,argv,needle", [
    ("missing run dir", ["--resume"], "does not exist"),
    ("empty run dir", ["--resume"], "does not exist"),
    ("empty", ["--resume"], "cannot load training checkpoint"),
    ("garbage", ["--resume"], "cannot load training checkpoint"),
    ("weights only", ["--resume"], "not a training checkpoint (missing"),
    ("-o is a file", [], "is not a folder"),
    ("bad config", ["--config", "huge"], "invalid choice: 'huge'"),
    ("zero steps", ["--steps", "0"], "must be positive"),
    ("text steps", ["--steps", "many"], "invalid positive int value"),
    ("negative workers", ["--workers", "-1"], "invalid choice"),
    ("skip every phase", ["--config", "small_curriculum", "--skip-phases", "3"], "cannot skip 3 of the 3"),
    ("unknown filter", ["--stage", "pseudo", "--labels", "L", "--filters", "cycle,color"], "--filters 'cycle,color'"),
])
def test_bad_input_one_error_line(tmp_path, capsys, case, argv, needle):
    run = tmp_path / "run"
    if case == "-o is a file":
        run.write_text("precious")
    elif case == "empty run dir":
        run.mkdir()
    elif case in ("empty", "garbage", "weights only"):
        planted(case, run)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    argv = ["--config", "tiny", *argv] if "--config" not in argv else argv
    code, err = run_cli(capsys, *argv, "-o", run)
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and needle in err[0], (case, err)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing created, nothing deleted
    if case == "-o is a file":
        assert run.read_text() == "precious"


def test_existing_run_other_model_or_past_steps(tmp_path, capsys):
    run = tmp_path / "run"
    tiny_run(capsys, run, 2)
    ckpt = (run / CHECKPOINT).read_bytes()
    for argv, needle in [([], "already holds a training run"),
                         (["--resume", "--steps", "1"], "past --steps 1"),
                         (["--resume", "--model", "online"], "was written for another model")]:
        code, err = run_cli(capsys, "--config", "tiny", "-o", run, *argv)
        assert code == 2 and len(err) == 1 and needle in err[0], (argv, err)
        assert (run / CHECKPOINT).read_bytes() == ckpt


def test_subprocess_no_traceback(tmp_path):
    res = subprocess.run([sys.executable, str(ROOT / "pipelines" / "train.py"), "--config", "tiny", "--resume",
                          "-o", str(tmp_path / "nothing")], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        f"error: no training checkpoint to resume: {tmp_path / 'nothing' / CHECKPOINT} does not exist"]
    assert not (tmp_path / "nothing").exists()


def test_trainer_api_refuses_planted_checkpoint(tmp_path):
    marker = tmp_path / "pwned"
    tmp_path.joinpath(CHECKPOINT).write_bytes(pickle.dumps({"rng": Payload(marker)}))
    t = Trainer(get_config("tiny", eval={"num_clips": 0}), tmp_path)
    with pytest.raises(ValueError, match="pickled Python objects"):
        t.fit(resume=True)
    assert not marker.exists()
