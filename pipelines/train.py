"""Train CoTracker3: ``python -m pipelines.train --config small -o runs/small [--resume] [--export W.safetensors]``.

Fine-tune on pseudo-labels (``pipelines/relabel.py`` output):
``python -m pipelines.train --stage pseudo --labels LABELS_DIR --init default -o runs/student``.

Curriculum (short clips, then 16- and 24-frame clips at 192 and 256 px): ``--config small_curriculum``
(offline) and ``--config small_online`` (the online teacher); ``--init default --skip-phases 1`` starts
from the shipped small weights, which already learnt the first phase (short clips). Spend at most ~2 h
of CPU in one sitting with ``--max-minutes 120`` and continue later with ``--resume`` (repeat
``--skip-phases``; a resume with other phases than the checkpoint's is refused).

Several GPUs / nodes: ``torchrun --nproc_per_node 8 -m pipelines.train ...`` (same arguments).

Resuming (``--resume``) continues RUN_DIR/checkpoint.pt exactly. ``--steps`` is the schedule's length:
resuming with the same value is bit-identical to an uninterrupted run; with another value (e.g. 40 steps,
then ``--steps 60 --resume``) the run extends without a warm restart: the learning rate stays at its
current value and decays over the run's last share (a WSD run in its constant phase simply moves its
decay to the new end; cotracker3/training/schedule.py).
The checkpoint is read with ``torch.load(weights_only=True)``: it never runs code stored in it.

A fixed wall-clock budget, at full speed on a GPU (bf16, the config's larger GPU batch, clips rendered
on the device), then evaluation and export:
``python pipelines/train.py --config small --budget-minutes 9 --device cuda -o OUT`` writes
OUT/cotracker3_small_offline.safetensors (fp16, config in the metadata) and OUT/metrics.json beside
the run's checkpoint and logs (cotracker3/training/budget.py says how the schedule is fitted).

Bad input (a missing or corrupt checkpoint, -o that is a file or already holds a run without
--resume, ...) exits with status 2 and one line ``error: ...``.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout

from cotracker3.checkpoint import CheckpointError, resolve_checkpoint
from cotracker3.data.pseudo_labels import FILTERS
from cotracker3.training import CONFIGS, RunError, Trainer, get_config
from cotracker3.training.budget import train_for_budget
from cotracker3.training.configs import STAGES
from cotracker3.training.curriculum import skip_phases


class UsageError(Exception):
    """Bad command-line input: reported as one ``error:`` line, exit status 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's usage + message becomes one line, raised to main
        raise UsageError(message)


def positive(kind):
    def parse(text):
        value = kind(text)
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value
    parse.__name__ = f"positive {kind.__name__}"  # argparse: "invalid positive int value: 'x'"
    return parse


def fraction(text):
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1], got {text}")
    return value


def main(argv=None) -> int:
    """Exit status 0, or 2 with one ``error:`` line on stderr for bad input (no traceback)."""
    try:
        run(argv)
    except (UsageError, CheckpointError, RunError, OSError) as e:
        msg = " ".join(str(e).split())
        print(f"error: {msg}", file=sys.stderr)
        return 2
    return 0


def run(argv=None) -> Trainer:
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", choices=sorted(CONFIGS), default="small")
    p.add_argument("-o", "--output", required=True, help="run directory (checkpoint, metrics.jsonl, eval.jsonl)")
    p.add_argument("--steps", type=positive(int), help="schedule length (default: the config's); with --resume "
                   "and another length the run is extended: the learning rate continues from its current value and "
                   "decays to the new end (no warm restart)")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoint.pt (which must exist)")
    p.add_argument("--stage", choices=sorted(STAGES), default="synthetic", help="pseudo: fine-tune on --labels")
    p.add_argument("--labels", help="relabel OUTDIR (stage pseudo)")
    p.add_argument("--filters", default=",".join(FILTERS), help="stage pseudo: label filters to honour, "
                   f"comma-separated subset of {','.join(FILTERS)}, or none (ablations)")
    p.add_argument("--synthetic-fraction", type=fraction, help="stage pseudo: share of synthetic clips mixed in")
    p.add_argument("--init", help="initial weights (any checkpoint build_model reads; 'default': the best found; "
                                  "stage pseudo defaults to 'default')")
    p.add_argument("--model", choices=["offline", "online"], help="default: the config's")
    p.add_argument("--skip-phases", type=int, default=0, metavar="N", help="drop the first N curriculum phases "
                   "(their steps too), for an --init that already learnt them, e.g. the shipped small weights")
    p.add_argument("--export", help="write the final weights here (fp16 .safetensors with the config)")
    p.add_argument("--eval-data", help="TAP-Vid pickle for periodic evaluation (default: synthetic set in RUN_DIR)")
    p.add_argument("--max-minutes", type=positive(float), help="stop (with a checkpoint) after this much wall time")
    p.add_argument("--budget-minutes", type=positive(float),
                   help="train for this wall-clock time (schedule fitted to the measured speed), evaluate, export to OUT")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto: a GPU when there is one")
    p.add_argument("--threads", type=positive(int), help="torch CPU threads")
    p.add_argument("--workers", type=int, choices=range(0, 65), metavar="N", help="DataLoader worker processes")
    p.add_argument("--batch-size", type=positive(int), help="clips per step (default: the config's)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {"train": {"num_workers": args.workers} if args.workers is not None else {}}
    if args.batch_size:
        overrides["train"]["batch_size"] = args.batch_size
    init = args.init
    if args.stage == "pseudo":
        if not args.labels:
            p.error("--stage pseudo needs --labels")
        filters = [f for f in args.filters.split(",") if f and f != "none"]
        if set(filters) - set(FILTERS):
            p.error(f"--filters {args.filters!r}: choose from {','.join(FILTERS)} or none")
        overrides["data"] = {"labels": args.labels, "filters": filters}
        if args.synthetic_fraction is not None:
            overrides["data"]["synthetic_fraction"] = args.synthetic_fraction
        init = init or "default"  # the paper fine-tunes a synthetic-trained model, never from scratch
    try:
        conf = skip_phases(get_config(args.config, args.stage, **overrides), args.skip_phases)
    except ValueError as e:
        raise UsageError(f"--skip-phases {args.skip_phases}: {e}") from None
    if init == "default":
        try:
            init = str(resolve_checkpoint(args.model or conf["model"]["kind"], "default")[0])
        except CheckpointError as e:
            raise UsageError(f"{e} (or pass --init WEIGHTS)") from None
    device = None if args.device == "auto" else args.device
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device available to torch")
    if args.budget_minutes:
        clash = [f for f, v in (("--resume", args.resume), ("--steps", args.steps), ("--max-minutes", args.max_minutes),
                                ("--export", args.export)) if v]
        if clash:
            raise UsageError(f"--budget-minutes sizes, ends and exports the run itself; drop {', '.join(clash)}")
        if Path(args.output).is_dir() and any(Path(args.output).iterdir()):
            raise UsageError(f"output {args.output} is not empty; --budget-minutes starts a new run in a new folder")
        result = train_for_budget(conf, args.output, args.budget_minutes, args.config, kind=args.model,
                                  device=device, init=init)
        print(f"{args.output}: {result['steps']} steps, {result['clips']} clips in {result['train_seconds']} s "
              f"({result['device']}); average Jaccard {(result['eval'] or {}).get('average_jaccard', float('nan')):.3f}; "
              f"weights {result['weights']}")
        return None
    trainer = Trainer(conf, args.output, kind=args.model, init=init, eval_pickle=args.eval_data, device=device)
    trainer.fit(steps=args.steps, resume=args.resume, max_minutes=args.max_minutes)
    if args.export:
        trainer.export(args.export, half=True)
    return trainer


if __name__ == "__main__":
    sys.exit(main())
