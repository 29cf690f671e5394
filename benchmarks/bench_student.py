"""Issue 14's experiment: teachers label real video, students learn from the filtered labels, all are scored.

Steps (each a CLI call of this repository; a step whose output exists is not redone, so a killed run
resumes where it stopped; at most ``--jobs`` calls run at once, one torch thread each):

1. ``relabel.py`` on every real video of the shared data except ``bear.mp4`` (the BADJA evaluation video):
   teachers Lucas-Kanade, the offline and the online model, a random teacher per video for each of
   ``epochs`` epochs, SIFT queries, the cycle and the 3D filters (verdicts stored, applied at training).
2. Students: ``train.py --stage pseudo`` from the offline teacher, once per filter set (both filters,
   no 3D filter, no cycle filter), the paper's recipe (vis/conf head frozen, track loss only).
3. Every teacher and student: ``evaluate.py --badja``, ``evaluate.py --data synthetic``, and geometric
   consistency: relabel the static videos with the model as the only teacher and read the fraction of
   its visible observations that the SfM bridge verifies.

    python benchmarks/bench_student.py --offline OFF.safetensors --online ON.safetensors -o runs/student_exp

Prints the table (markdown) and writes OUT/results.json. Data licences are research only: results only.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipelines.recipe import LABELS, RECIPE, cli, videos  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
STATIC = ["apple", "cat", "teddy"]  # static scenes (each reconstructs all its frames)
STUDENTS = {"student (both filters)": "cycle,geometric", "student (no 3D filter)": "cycle",
            "student (no cycle filter)": "geometric"}
CONF = {
    "relabel": ["--epochs", "2", *LABELS],
    "student": RECIPE["pseudo"]["args"],
    "consistency": LABELS,
    "synthetic_clips": 10,
}


def call(args: list, done: Path, log: Path) -> float:
    """Run one CLI (python -m ..., one core) unless ``done`` exists; returns its wall seconds (0 when skipped).
    ``done`` is the call's own output, or a marker written here when the call succeeded."""
    if done.exists():
        return 0.0
    t0 = time.perf_counter()
    cli(*args, log=log)
    if not done.exists():
        done.write_text("")
    return time.perf_counter() - t0


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_").replace("__", "_")


def teacher_spec(model: dict) -> str:
    return "lk" if model["weights"] == "lk" else f"{'cotracker3-online' if model['kind'] == 'online' else 'cotracker3'}={model['weights']}"


def evaluate(name: str, model: dict, out: Path, data: Path) -> list:
    """The calls scoring one model (BADJA, synthetic, geometric consistency on the static videos)."""
    kind = [] if model["weights"] == "lk" else ["--model", model["kind"]]
    base = ["pipelines.evaluate", "--checkpoint", model["weights"], "--threads", "1", *kind]
    d = out / "eval" / slug(name)
    d.mkdir(parents=True, exist_ok=True)
    static = [str(data / "cotracker_videos" / f"{s}.mp4") for s in STATIC]
    return [
        ([*base, "--badja", "-o", d / "badja.json"], d / "badja.json", d / "log.txt"),
        ([*base, "--data", "synthetic", "--num-clips", CONF["synthetic_clips"], "-o", d / "synthetic.json"],
         d / "synthetic.json", d / "log.txt"),
        (["pipelines.relabel", *static, "-o", d / "consistency", "--teachers", teacher_spec(model),
          *CONF["consistency"]], d / "consistency" / "done", d / "log.txt"),
    ]


def consistency(folder: Path) -> dict:
    recs = [json.loads(x) for x in (folder / "manifest.jsonl").read_text().splitlines() if x.strip()]
    s = {k: sum(r["stats"][k] for r in recs if r["status"] == "done") for k in ("visible", "after_cycle", "verified")}
    return dict(s, verified_fraction=s["verified"] / max(s["visible"], 1))


def curve(run: Path, every: int = 100) -> list:
    """Mean training loss per ``every`` steps (the learning curve)."""
    recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    out = {}
    for r in recs:
        out.setdefault((r["step"] - 1) // every, []).append(r["loss"])
    return [round(sum(v) / len(v), 3) for _, v in sorted(out.items())]


def table(results: dict) -> str:
    rows = ["| model | BADJA PCK@0.2√bbox (proxy) | PCK@5/10/20 px | synthetic AJ | δ avg | OA | verified fraction (static) |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in results.items():
        b, s, c = r["badja"], r["synthetic"], r["consistency"]
        rows.append(f"| {name} | {b['pck@0.2sqrt(bbox)_proxy']:.3f} | {b['pck@5px']:.3f} / {b['pck@10px']:.3f} / {b['pck@20px']:.3f} | "
                    f"{100 * s['average_jaccard']:.2f} | {100 * s['average_pts_within_thresh']:.2f} | "
                    f"{100 * s['occlusion_accuracy']:.2f} | {c['verified_fraction']:.3f} ({c['verified']}/{c['visible']}) |")
    return "\n".join(rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--offline", required=True, help="offline teacher weights (students start from them)")
    p.add_argument("--online", required=True, help="online teacher weights")
    p.add_argument("--offline-run", type=Path, help="the offline teacher's training run (its learning curve is reported)")
    p.add_argument("--online-run", type=Path, help="the online teacher's training run")
    p.add_argument("-o", "--output", type=Path, required=True)
    p.add_argument("--steps", type=int, default=300, help="student training steps")
    p.add_argument("--jobs", type=int, default=2, help="CLI calls at once (one torch thread each)")
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--synthetic-clips", type=int, default=CONF["synthetic_clips"])
    args = p.parse_args(argv)
    CONF["synthetic_clips"] = args.synthetic_clips
    out = args.output.resolve()
    out.mkdir(parents=True, exist_ok=True)
    log = out / "log.txt"
    seconds = {}

    def timed(job):  # wall seconds per call, keyed by what the call makes
        seconds[str(job[1].relative_to(out))] = round(call(*job), 1)

    try:
        inputs = videos(args.data)
    except RuntimeError as e:
        raise SystemExit(f"error: {e}") from None
    labels = out / "labels"
    with ThreadPoolExecutor(args.jobs) as pool:  # relabel in shards, one per job
        jobs = [(["pipelines.relabel", *inputs, "-o", labels, "--teachers",
                  f"lk,cotracker3={args.offline},cotracker3-online={args.online}", "--shard", f"{i}/{args.jobs}",
                  *CONF["relabel"]], labels / f"shard{i}.done", log) for i in range(args.jobs)]
        for f in [pool.submit(timed, j) for j in jobs]:
            f.result()

    models = {"teacher: Lucas-Kanade": {"weights": "lk"},
              "teacher: offline (small, curriculum)": {"weights": args.offline, "kind": "offline", "run": args.offline_run},
              "teacher: online (small, curriculum)": {"weights": args.online, "kind": "online", "run": args.online_run}}
    student_jobs = []
    for name, filters in STUDENTS.items():
        run = out / name.split("(")[1].rstrip(")").replace(" ", "_")
        weights = run / "student.safetensors"
        student_jobs.append((name, (["pipelines.train", *CONF["student"], "--labels", labels, "--init", args.offline,
                                     "--filters", filters, "--steps", args.steps, "--threads", "1", "-o", run,
                                     "--export", weights], weights, log)))
        models[name] = {"weights": str(weights), "kind": "offline", "run": str(run)}
    students = [n for n, _ in student_jobs]
    evals = [j for n, m in models.items() if n not in students for j in evaluate(n, m, out, args.data)]
    with ThreadPoolExecutor(args.jobs) as pool:  # students and the teachers' evaluations share the cores
        futures = [pool.submit(timed, j) for _, j in student_jobs]
        futures += [pool.submit(timed, j) for j in evals]
        for f in futures:
            f.result()
    with ThreadPoolExecutor(args.jobs) as pool:
        for f in [pool.submit(timed, j) for n in students for j in evaluate(n, models[n], out, args.data)]:
            f.result()

    results = {}
    for name, m in models.items():
        d = out / "eval" / slug(name)
        results[name] = {"badja": json.loads((d / "badja.json").read_text())["average"],
                         "synthetic": json.loads((d / "synthetic.json").read_text())["average"],
                         "consistency": consistency(d / "consistency")}
        if m.get("run"):
            results[name]["loss_per_100_steps"] = curve(Path(m["run"]))
            evals_file = Path(m["run"]) / "eval.jsonl"
            if evals_file.is_file():  # in-training synthetic evaluations (4 clips): AJ by step
                results[name]["eval_aj_by_step"] = {r["step"]: round(100 * r["average_jaccard"], 2) for r in
                                                    map(json.loads, evals_file.read_text().splitlines()) if "step" in r}
    (out / "results.json").write_text(json.dumps({"results": results, "seconds": seconds}, indent=1))
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
