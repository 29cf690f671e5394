"""Score trackers on every stored evaluation (issue 20): Lucas-Kanade, the shipped weights and each candidate.

    python benchmarks/bench_candidates.py lk shipped=cotracker3/weights/cotracker3_small_offline.safetensors \
        gpu=runs/gpu/cotracker3_small_curriculum_offline.safetensors -o runs/candidates

Per model, each a CLI call of this repository (resumable: a call whose output exists is skipped):
- BADJA bear: PCK@0.2·sqrt(area) proxy and PCK at fixed 5/10/20 px (``evaluate.py --badja``);
- the synthetic set with exact ground truth: average Jaccard and the share within 1/2/4 px at 256 px
  (``evaluate.py --data synthetic``);
- geometric consistency on every static shared video: the share of visible observations that the SfM
  bridge verifies (``relabel.py`` with the model as the only teacher);
- cycle consistency on the dynamic DAVIS videos: the share of visible observations that survive the
  forward-backward check (same call, on ``davis_videos``).
The calls and their settings are bench_student.py's (one mechanism). Prints a markdown table and writes
OUT/results.json. The data's licences are research only: results only, never the data.
"""
from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_student import CONF, DATA, call, consistency, evaluate, slug, teacher_spec  # noqa: E402

DYNAMIC_FRAMES = ["--max-frames", "24"]  # DAVIS clips: 24 frames each keeps a CoTracker model at ~1 CPU-min a video


def model_spec(text: str) -> tuple[str, dict]:
    """``lk`` or ``NAME=WEIGHTS[:online]``."""
    if text == "lk":
        return "Lucas-Kanade", {"weights": "lk"}
    name, _, weights = text.partition("=")
    kind = "online" if weights.endswith(":online") else "offline"
    weights = weights.removesuffix(":online")
    if not name or not Path(weights).is_file():
        raise SystemExit(f"error: {text!r}: expected lk or NAME=WEIGHTS with an existing weights file")
    return name, {"weights": str(Path(weights).resolve()), "kind": kind}


def calls(name: str, model: dict, out: Path, data: Path) -> list:
    """bench_student's calls (BADJA, synthetic, static-video consistency) plus cycle consistency on DAVIS."""
    d = out / "eval" / slug(name)
    davis = sorted(str(p) for p in (data / "davis_videos").glob("*.mp4"))
    dynamic = (["pipelines.relabel", "--teachers", teacher_spec(model), *davis, "-o", d / "dynamic", "--no-geometric-filter",
                *CONF["consistency"], *DYNAMIC_FRAMES], d / "dynamic" / "done", d / "log.txt")
    return [*evaluate(name, model, out, data), dynamic]


def scores(d: Path) -> dict:
    b = json.loads((d / "badja.json").read_text())["average"]
    s = json.loads((d / "synthetic.json").read_text())["average"]
    static, dynamic = consistency(d / "consistency"), consistency(d / "dynamic")
    return {"badja_proxy": b["pck@0.2sqrt(bbox)_proxy"], **{f"badja_{r}px": b[f"pck@{r}px"] for r in (5, 10, 20)},
            "synthetic_aj": 100 * s["average_jaccard"], **{f"synthetic_{r}px": 100 * s[f"pts_within_{r}"] for r in (1, 2, 4)},
            "static_verified": static["verified_fraction"],
            "dynamic_cycle_kept": dynamic["after_cycle"] / max(dynamic["visible"], 1)}


def table(results: dict) -> str:
    rows = ["| model | BADJA proxy | BADJA PCK@5/10/20 px | synthetic AJ | synthetic <1/2/4 px (%) | static verified | "
            "DAVIS cycle kept |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in results.items():
        rows.append(f"| {name} | {r['badja_proxy']:.3f} | {r['badja_5px']:.3f} / {r['badja_10px']:.3f} / {r['badja_20px']:.3f} | "
                    f"{r['synthetic_aj']:.2f} | {r['synthetic_1px']:.1f} / {r['synthetic_2px']:.1f} / {r['synthetic_4px']:.1f} | "
                    f"{r['static_verified']:.3f} | {r['dynamic_cycle_kept']:.3f} |")
    return "\n".join(rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", help="lk, or NAME=WEIGHTS (append :online for an online model)")
    p.add_argument("-o", "--output", type=Path, required=True)
    p.add_argument("--jobs", type=int, default=2, help="CLI calls at once (one torch thread each)")
    p.add_argument("--data", type=Path, default=DATA)
    args = p.parse_args(argv)
    models = dict(model_spec(m) for m in args.models)
    out = args.output.resolve()
    out.mkdir(parents=True, exist_ok=True)
    jobs = [j for n, m in models.items() for j in calls(n, m, out, args.data)]
    with ThreadPoolExecutor(args.jobs) as pool:
        for f in [pool.submit(call, *j) for j in jobs]:
            f.result()
    results = {n: scores(out / "eval" / slug(n)) for n in models}
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
