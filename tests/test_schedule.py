"""Learning-rate schedules: the official one-cycle reproduced, WSD, and extension without a warm restart."""
import pytest
import torch

from cotracker3.training.configs import get_config
from cotracker3.training.schedule import build_schedule, extend, fresh_knots, piece_at, resume_schedule, scale_at


def at(pieces, s):
    return scale_at(piece_at(pieces, s), s)


def lrs(sched, steps):
    out = []
    for _ in range(steps):
        out.append(sched.get_last_lr()[0])
        sched.optimizer.step()
        sched.step()
    return out


def optimizer(lr):
    return torch.optim.AdamW([torch.zeros(1, requires_grad=True)], lr=lr)


@pytest.mark.parametrize("extra,pct", [(100, 0.05), (0, 0.1), (100, 0.0)])
def test_onecycle_matches_torch(extra, pct):
    tc = dict(get_config("tiny")["train"], schedule="onecycle", schedule_extra_steps=extra, pct_start=pct)
    opt = optimizer(tc["lr"])
    ref = torch.optim.lr_scheduler.OneCycleLR(opt, tc["lr"], 300 + max(1, extra), pct_start=pct,
                                              cycle_momentum=False, anneal_strategy="cos")
    assert lrs(build_schedule(optimizer(tc["lr"]), tc, 300), 300) == pytest.approx(lrs(ref, 300), rel=1e-9)


def test_wsd_shape():
    tc = dict(get_config("small")["train"], pct_start=0.1, decay_frac=0.2)
    k = fresh_knots(tc, 100)
    assert scale_at(k, 0) == 0 and scale_at(k, 10) == 1 and scale_at(k, 50) == 1 and scale_at(k, 80) == 1
    assert 0 < scale_at(k, 90) < 1 and scale_at(k, 100) == 0


def test_wsd_extended_in_stable_phase_is_the_fresh_longer_schedule():
    tc = dict(get_config("small")["train"], pct_start=0.05, decay_frac=0.2)
    ext = extend([[0, fresh_knots(tc, 100)]], 50, 200, 0.2, 0.0)
    fresh = fresh_knots(dict(tc, pct_start=0.025), 200)  # same warm-up length in steps (5)
    assert [at(ext, s) for s in range(201)] == pytest.approx([scale_at(fresh, s) for s in range(201)])


@pytest.mark.parametrize("kind,step", [("wsd", 90), ("wsd", 100), ("onecycle", 60), ("onecycle", 100), ("wsd", 2)])
def test_extension_never_rises_and_is_continuous(kind, step):
    tc = dict(get_config("small")["train"], schedule=kind, schedule_extra_steps=0, pct_start=0.05)
    knots = fresh_knots(tc, 100)
    ext = extend([[0, knots]], step, 300, tc["decay_frac"] if kind == "wsd" else 1.0, 0.0)
    assert [at(ext, s) for s in range(step + 1)] == pytest.approx([scale_at(knots, s) for s in range(step + 1)])
    after = [at(ext, s) for s in range(step, 301)]
    peak_after_warmup = max(after[max(0, 5 - step):])
    assert peak_after_warmup <= max(scale_at(knots, step), 1.0 if step < 5 else 0) + 1e-12
    assert all(b <= a + 1e-12 for a, b in zip(after[max(0, 5 - step):], after[max(0, 5 - step) + 1:]))
    assert after[-1] <= 1e-6


def test_resume_reads_the_saved_schedule_and_old_onecycle_state():
    tc = dict(get_config("tiny")["train"], schedule="onecycle", schedule_extra_steps=100)
    a = build_schedule(optimizer(tc["lr"]), tc, 400)
    lrs(a, 150)
    same = resume_schedule(optimizer(tc["lr"]), tc, a.state_dict(), 150, 400)
    assert lrs(same, 50) == lrs(a, 50)
    opt = optimizer(tc["lr"])  # a checkpoint of the earlier trainer: torch's OneCycleLR state
    old = torch.optim.lr_scheduler.OneCycleLR(opt, tc["lr"], 500, pct_start=tc["pct_start"], cycle_momentum=False)
    lrs(old, 200)
    old_lr_at_200 = old.get_last_lr()[0]
    cont = resume_schedule(optimizer(tc["lr"]), tc, old.state_dict(), 200, 400)
    assert lrs(cont, 100) == pytest.approx(lrs(old, 100), rel=1e-9)
    longer = resume_schedule(optimizer(tc["lr"]), tc, old.state_dict(), 200, 800)
    seq = lrs(longer, 600)
    assert seq[0] == pytest.approx(old_lr_at_200) and max(seq) <= seq[0] * (1 + 1e-9) and seq[-1] < 1e-3 * seq[0]


def test_unknown_schedule_is_refused():
    with pytest.raises(ValueError, match="unknown learning-rate schedule 'step'"):
        fresh_knots(dict(get_config("tiny")["train"], schedule="step"), 10)
