"""python -m nslviz spiral: the MN spiral toy (paper sec. 4.1) and the plain linear classifier."""
from __future__ import annotations

from ..experiments.spiral import SpiralConfig, run_spiral
from .common import emit_json, folder_path, positive_float, positive_int, seed_value


def add_parser(subparsers) -> None:
    defaults = SpiralConfig()
    p = subparsers.add_parser("spiral", help="train Meta-Neighborhoods on the concentric spirals",
                              description="Train a linear classifier finetuned per input on induced neighbors "
                                          "(MN sec. 4.1) and a plain linear classifier on the same spirals.")
    p.add_argument("--steps", type=positive_int, default=defaults.steps, help="meta-training iterations")
    p.add_argument("--entries", type=positive_int, default=defaults.entries, help="induced neighbors S")
    p.add_argument("--temperature", type=positive_float, default=defaults.temperature, help="softmax temperature T")
    p.add_argument("--seed", type=seed_value, default=defaults.seed, help="data, dictionary and training order")
    p.add_argument("--lr", type=positive_float, default=defaults.lr, help="Adam learning rate")
    p.add_argument("--batch-size", type=positive_int, default=defaults.batch_size)
    p.add_argument("--run-dir", type=folder_path, default=None, help="write config.json, metrics.jsonl, summary.json here")
    p.add_argument("--overwrite", action="store_true", help="replace the run already in --run-dir (else refused)")
    p.add_argument("--json", action="store_true", help="end the output with one JSON object")
    p.set_defaults(run=run, subparser=p)


def run(args) -> int:
    result = run_spiral(SpiralConfig(steps=args.steps, entries=args.entries, temperature=args.temperature,
                                     seed=args.seed, lr=args.lr, batch_size=args.batch_size),
                        run_dir=args.run_dir, overwrite=args.overwrite)
    s = result.summary()
    print(f"spiral: Meta-Neighborhoods test acc {s['mn_test_acc']:.4f} | linear classifier test acc "
          f"{s['linear_test_acc']:.4f} | S={s['entries']} T={s['temperature']:g} steps={s['steps']} "
          f"| {s['seconds']:.1f} s", flush=True)
    if args.json:
        emit_json(s)
    return 0
