"""python -m nslviz higher-order: NSL sec. 6, one-layer models (a convolution, dynamic NSL with the
linear and with the released predictor) fitted to a linear, an even and a quadratic function of photo
patches (nslviz.experiments.higher_order)."""
from __future__ import annotations

from ..experiments.higher_order import MODELS, TARGETS, HigherOrderConfig, run_higher_order
from .common import add_progress_argument, emit_json, positive_float, positive_int, seed_value, thread_count


def add_parser(subparsers) -> None:
    defaults = HigherOrderConfig()
    p = subparsers.add_parser(
        "higher-order", help="NSL sec. 6: dynamic NSL is a higher-order function of its input",
        description="Train a convolution and two one-layer dynamic NSL models to compute a Sobel filter, the edge "
                    "strength |∇X| and the edge energy |∇X|² of grey photo crops; print each model's R² on held-out "
                    "crops and its degree in the contrast.")
    p.add_argument("--steps", type=positive_int, default=defaults.steps, help="Adam steps per model and target")
    p.add_argument("--lr", type=positive_float, default=defaults.lr)
    p.add_argument("--batch-size", type=positive_int, default=defaults.batch_size)
    p.add_argument("--crop", type=positive_int, default=defaults.crop, help="crop size in pixels (3 to 71)")
    p.add_argument("--seed", type=seed_value, default=defaults.seed)
    p.add_argument("--threads", type=thread_count, default=defaults.threads,
                   help="torch CPU threads while it runs (default: 1, fastest for these one-layer models)")
    add_progress_argument(p)
    p.add_argument("--json", action="store_true", help="end the output with one JSON object")
    p.set_defaults(run=run, subparser=p)


def run(args) -> int:
    config = HigherOrderConfig(steps=args.steps, lr=args.lr, batch_size=args.batch_size, crop=args.crop,
                               seed=args.seed, threads=args.threads, progress=not args.no_progress)
    result = run_higher_order(config)
    width, cell = max(map(len, TARGETS.values())), max(map(len, MODELS))
    print(f"{'test R² (degree in the contrast)':{width}} | " + " | ".join(f"{m:{cell}}" for m in MODELS), flush=True)
    for target, label in TARGETS.items():
        cells = [f"{result.r2[target][m]:+.3f} ({result.degree[target][m]:.2f})" for m in MODELS]
        print(f"{label:{width}} | " + " | ".join(f"{c:{cell}}" for c in cells), flush=True)
    print(f"{config.steps} Adam steps per fit, {result.seconds:.1f} s", flush=True)
    if args.json:
        emit_json(result.summary())
    return 0
