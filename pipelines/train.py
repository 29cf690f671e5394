"""Train CoTracker3: ``python -m pipelines.train --config small -o runs/small [--resume] [--export W.safetensors]``.

Fine-tune on pseudo-labels (``pipelines/relabel.py`` output):
``python -m pipelines.train --stage pseudo --labels LABELS_DIR --init default -o runs/student``.

Several GPUs / nodes: ``torchrun --nproc_per_node 8 -m pipelines.train ...`` (same arguments).
"""
from __future__ import annotations

import argparse
import logging

import torch

from cotracker3.checkpoint import CheckpointError, resolve_checkpoint
from cotracker3.training import CONFIGS, Trainer, get_config
from cotracker3.training.configs import STAGES


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", choices=sorted(CONFIGS), default="small")
    p.add_argument("-o", "--output", required=True, help="run directory (checkpoint, metrics.jsonl, eval.jsonl)")
    p.add_argument("--steps", type=int, help="schedule length (default: the config's)")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoint.pt")
    p.add_argument("--stage", choices=sorted(STAGES), default="synthetic", help="pseudo: fine-tune on --labels")
    p.add_argument("--labels", help="relabel OUTDIR (stage pseudo)")
    p.add_argument("--synthetic-fraction", type=float, help="stage pseudo: share of synthetic clips mixed in")
    p.add_argument("--init", help="initial weights (any checkpoint build_model reads; 'default': the best found; "
                                  "stage pseudo defaults to 'default')")
    p.add_argument("--model", choices=["offline", "online"], help="default: the config's")
    p.add_argument("--export", help="write the final weights here (fp16 .safetensors with the config)")
    p.add_argument("--eval-data", help="TAP-Vid pickle for periodic evaluation (default: synthetic set in RUN_DIR)")
    p.add_argument("--max-minutes", type=float, help="stop (with a checkpoint) after this much wall time")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--workers", type=int, help="DataLoader workers")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {"train": {"num_workers": args.workers} if args.workers is not None else {}}
    init = args.init
    if args.stage == "pseudo":
        if not args.labels:
            p.error("--stage pseudo needs --labels")
        overrides["data"] = {"labels": args.labels}
        if args.synthetic_fraction is not None:
            overrides["data"]["synthetic_fraction"] = args.synthetic_fraction
        init = init or "default"  # the paper fine-tunes a synthetic-trained model, never from scratch
    conf = get_config(args.config, args.stage, **overrides)
    if init == "default":
        try:
            init = str(resolve_checkpoint(args.model or conf["model"]["kind"], "default")[0])
        except CheckpointError as e:
            p.error(f"{e} (or pass --init WEIGHTS)")
    trainer = Trainer(conf, args.output, kind=args.model, init=init, eval_pickle=args.eval_data)
    trainer.fit(steps=args.steps, resume=args.resume, max_minutes=args.max_minutes)
    if args.export:
        trainer.export(args.export, half=True)
    return trainer


if __name__ == "__main__":
    main()
