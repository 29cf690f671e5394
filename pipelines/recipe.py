"""The long training recipe, in stints that survive any stop: ``python -m pipelines.recipe -o runs/recipe``.

Stages (a plain config dict, ``RECIPE``), each a call of this repository's CLIs in a subprocess:

1. ``synthetic``: the curriculum's last phase (24-frame clips at the model resolution), warm-started from
   ``--init`` (default: the shipped weights), warmup-stable-decay over ``steps``;
2. ``relabel``: pseudo-labels of every shared real video except BADJA's bear (``relabel.py``, resumable by
   its manifest), teachers Lucas-Kanade and the stage-1 model, a random teacher per video and epoch;
3. ``pseudo``: the paper's fine-tuning on those labels from the stage-1 model.

Each call of this command runs stints of ``--stint-minutes`` until ``--minutes`` are spent: a stint is
``train.py --resume --max-minutes`` (the run continues exactly; the schedule is never restarted), then the
stint's weights are exported and scored on BADJA and the synthetic set (``evaluate.py``). RUN/curve.jsonl
gets one line per stint: stage, step, CPU-hours so far, the scores, and whether they beat the shipped
weights' stored scores. Stop it any time (or lose the machine)
and call it again with the same -o: it picks up at the last checkpoint. ``RUN/state.json`` says where it is.
Shipping is a person's decision: ``benchmarks/bench_candidates.py`` scores a stint's weights on every stored
evaluation against Lucas-Kanade and the shipped weights.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cotracker3.checkpoint import EMBEDDED_DIR, EMBEDDED_FILES, score_vs_lk  # noqa: E402
from cotracker3.training.state import CHECKPOINT, load_training_checkpoint  # noqa: E402
from pipelines.cli import fail  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
# Labelling settings sized for a 2-core CPU: a CoTracker teacher's cycle check re-tracks every anchor, so
# 32 frames, 128 SIFT queries and one anchor per side keep a video at ~1 CPU-min (students train on 16 frames).
LABELS = ["--max-frames", "32", "--max-side", "384", "--num-queries", "128", "--cycle-anchors", "1"]
RECIPE = {
    "synthetic": {"args": ["--config", "small_curriculum", "--skip-phases", "2"], "steps": 3000},
    "relabel": {"args": ["--teachers", "lk,cotracker3={weights}", "--epochs", "2", *LABELS],
                "exclude": ["bear.mp4"], "folders": ["cotracker_videos", "davis_videos"]},  # bear: BADJA, evaluation only
    "pseudo": {"args": ["--config", "small_curriculum", "--skip-phases", "1", "--stage", "pseudo"], "steps": 2000},
}
STAGES = ("synthetic", "relabel", "pseudo")


def write_json(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def child_hours() -> float:
    """CPU-hours of this process's finished children (the CLI calls)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (r.ru_utime + r.ru_stime) / 3600


def cli(*args, log: Path) -> None:
    """``python -m ARGS`` with one torch thread; RuntimeError naming the log when it fails."""
    with open(log, "a") as f:
        f.write(f"$ {' '.join(map(str, args))}\n")
        f.flush()
        rc = subprocess.call([sys.executable, "-m", *map(str, args)], cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
                             env=dict(os.environ, OMP_NUM_THREADS="1"))
    if rc != 0:
        raise RuntimeError(f"{args[0]} exited {rc}; see {log}")


def step_of(run: Path) -> int:
    """The step of a training run's checkpoint (0 before its first)."""
    path = run / CHECKPOINT
    return load_training_checkpoint(path)["step"] if path.is_file() else 0


def videos(data: Path) -> list[str]:
    conf = RECIPE["relabel"]
    found = sorted(str(p) for d in conf["folders"] for p in (data / d).glob("*.mp4") if p.name not in conf["exclude"])
    if not found:
        raise RuntimeError(f"no videos under {data} ({', '.join(conf['folders'])})")
    return found


def beats_shipped(record: dict) -> bool:
    """Whether a stint beats the shipped weights on both scores their model card stores (BADJA proxy,
    synthetic AJ): only then is it a candidate worth the full evaluation (bench_candidates.py)."""
    stored = {s["metric"]: s["ours"] for s in score_vs_lk(EMBEDDED_DIR / EMBEDDED_FILES["offline"]) or []}
    return (record["badja_proxy"] > stored.get("BADJA bear PCK proxy", float("inf"))
            and record["synthetic_aj"] > stored.get("synthetic TAP-Vid AJ x100", float("inf")))


def stint(out: Path, stage: str, init: str, minutes: float, state: dict, extra=()) -> bool:
    """One stint of a training stage; True when the stage has reached its steps."""
    run, conf, hours = out / stage, RECIPE[stage], child_hours()
    resume = ["--resume"] if (run / CHECKPOINT).is_file() else ["--init", init]
    weights = out / f"{stage}.safetensors"
    cli("pipelines.train", *conf["args"], *extra, "--steps", conf["steps"], "--threads", 1, "--max-minutes", minutes,
        "-o", run, "--export", weights, *resume, log=out / "log.txt")
    step = step_of(run)
    scores = {}
    for what, flag in (("badja", ["--badja"]), ("synthetic", ["--data", "synthetic", "--num-clips", "10"])):
        path = out / "eval" / f"{stage}_{step}_{what}.json"
        path.parent.mkdir(exist_ok=True)
        if not path.is_file():
            cli("pipelines.evaluate", "--checkpoint", weights, "--threads", 1, *flag, "-o", path, log=out / "log.txt")
        scores[what] = json.loads(path.read_text())["average"]
    state["cpu_hours"] += child_hours() - hours
    record = {"stage": stage, "step": step, "cpu_hours": round(state["cpu_hours"], 3),
              "badja_proxy": scores["badja"]["pck@0.2sqrt(bbox)_proxy"], "badja_10px": scores["badja"]["pck@10px"],
              "synthetic_aj": 100 * scores["synthetic"]["average_jaccard"],
              "synthetic_2px": 100 * scores["synthetic"]["pts_within_2"]}
    record["beats_shipped"] = beats_shipped(record)
    with open(out / "curve.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")
    return step >= conf["steps"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-o", "--output", type=Path, required=True, help="recipe folder (resumed when it exists)")
    p.add_argument("--init", help="weights to start stage 1 from (default: the shipped weights)")
    p.add_argument("--minutes", type=float, default=60.0, help="wall time for this call (stints end on time)")
    p.add_argument("--stint-minutes", type=float, default=30.0, help="training minutes between evaluations")
    p.add_argument("--data", type=Path, default=DATA, help="the shared data (relabel's real videos)")
    for stage in ("synthetic", "pseudo"):
        p.add_argument(f"--{stage}-steps", type=int, default=RECIPE[stage]["steps"], help=f"{stage} stage length{' (0: skip it, --init is its model)' if stage == 'synthetic' else ''} "
                       "(a longer value on a later call, while the stage runs, extends it without a warm restart)")
    args = p.parse_args(argv)
    RECIPE["synthetic"]["steps"], RECIPE["pseudo"]["steps"] = args.synthetic_steps, args.pseudo_steps
    if args.minutes <= 0 or args.stint_minutes <= 0:
        return fail("--minutes and --stint-minutes must be positive")
    if args.synthetic_steps < 0 or args.pseudo_steps < 1:
        return fail("--synthetic-steps must be >= 0 (0: --init is the stage-1 model) and --pseudo-steps >= 1")
    out = args.output.resolve()
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / "state.json"
    state = json.loads(state_path.read_text()) if state_path.is_file() else {"stage": STAGES[0], "cpu_hours": 0.0}
    init = args.init or str(EMBEDDED_DIR / EMBEDDED_FILES["offline"])
    if not Path(init).is_file():
        return fail(f"--init {init}: no such weights file")
    deadline = time.time() + 60 * args.minutes
    try:
        while state["stage"] != "done" and time.time() < deadline:
            minutes = min(args.stint_minutes, max(1.0, (deadline - time.time()) / 60))
            stage = state["stage"]
            if stage == "synthetic" and RECIPE["synthetic"]["steps"] == 0:  # --init is the stage-1 model
                shutil.copyfile(init, out / "synthetic.safetensors")
                finished = True
            elif stage == "synthetic":
                finished = stint(out, stage, init, minutes, state)
            elif stage == "relabel":
                weights = out / "synthetic.safetensors"
                teachers = [a.format(weights=weights) for a in RECIPE["relabel"]["args"]]
                hours = child_hours()
                cli("pipelines.relabel", *videos(args.data), "-o", out / "labels", *teachers, log=out / "log.txt")
                state["cpu_hours"] += child_hours() - hours
                finished = True
            else:
                finished = stint(out, stage, str(out / "synthetic.safetensors"), minutes, state,
                                 extra=["--labels", out / "labels"])
            if finished:
                state["stage"] = STAGES[STAGES.index(stage) + 1] if stage != STAGES[-1] else "done"
            write_json(state_path, state)
    except RuntimeError as e:
        return fail(e)
    print(f"{out}: stage {state['stage']}, {state['cpu_hours']:.2f} CPU-hours; curve in {out / 'curve.jsonl'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
