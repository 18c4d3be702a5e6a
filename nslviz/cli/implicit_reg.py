"""python -m nslviz implicit-reg: NSL sec. 5.1, gradient descent on W versus on the factorisation W = MᵀW′
for an under-determined linear regression (nslviz.experiments.implicit_regularization)."""
from __future__ import annotations

import dataclasses

from ..experiments.implicit_regularization import (INITS, OBSERVATIONS, ImplicitRegularizationConfig,
                                                run_implicit_regularization)
from .common import add_progress_argument, emit_json, folder_path, positive_float, positive_int, seed_value


def add_parser(subparsers) -> None:
    defaults = ImplicitRegularizationConfig()
    p = subparsers.add_parser(
        "implicit-reg", help="NSL sec. 5.1: implicit regularisation of the factorisation W = MᵀW′",
        description="Run gradient descent on W and on (W′, M) with W = MᵀW′ for the same under-determined "
                    "least-squares problem and compare the solutions they reach (nuclear norm, singular values).")
    p.add_argument("--observation", choices=OBSERVATIONS, default=defaults.observation,
                   help="full: every sample observes all outputs (the paper's setting); projected: one random "
                        "projection of the outputs per sample (matrix sensing)")
    p.add_argument("--init", choices=INITS, default=defaults.init, help="how the two flows start")
    p.add_argument("--init-scale", type=positive_float, default=defaults.init_scale)
    p.add_argument("--inputs", type=positive_int, default=defaults.inputs, help="n, rows of W")
    p.add_argument("--outputs", type=positive_int, default=defaults.outputs, help="m, columns of W")
    p.add_argument("--samples", type=positive_int, default=None, help="N (default: n/2 full, 3·rank·(n+m) projected)")
    p.add_argument("--rank", type=positive_int, default=defaults.rank, help="rank of the ground truth W*")
    p.add_argument("--steps", type=positive_int, default=defaults.steps)
    p.add_argument("--lr", type=positive_float, default=defaults.lr, help="step in units of 1/λ_max (< 1)")
    p.add_argument("--seed", type=seed_value, default=defaults.seed)
    p.add_argument("--run-dir", type=folder_path, default=None, help="write config.json, metrics.jsonl, summary.json here")
    p.add_argument("--overwrite", action="store_true", help="replace the run already in --run-dir (default: refuse)")
    add_progress_argument(p)
    p.add_argument("--json", action="store_true", help="end the output with one JSON object")
    p.set_defaults(run=run, subparser=p)


def run(args) -> int:
    config = ImplicitRegularizationConfig(observation=args.observation, init=args.init, init_scale=args.init_scale,
                                          inputs=args.inputs, outputs=args.outputs, samples=args.samples,
                                          rank=args.rank, steps=args.steps, lr=args.lr, seed=args.seed,
                                          progress=not args.no_progress)
    from ..training.rundir import claimed_run_dir
    with claimed_run_dir(args.run_dir, overwrite=args.overwrite, one_shot=True):            # before the work, not after
        return _run(args, config)


def _run(args, config) -> int:
    from ..training.rundir import write_run
    result = run_implicit_regularization(config)
    s = result.summary()
    print(f"implicit-reg ({s['observation']}, init {s['init']} {s['init_scale']:g}, N={s['samples']}): nuclear norm "
          f"standard {s['standard_nuclear_norm']:.4f} | factorised {s['factorized_nuclear_norm']:.4f} | "
          f"min-Frobenius solution {s['min_frobenius_nuclear_norm']:.4f} | truth {s['truth_nuclear_norm']:.4f} "
          f"| {s['seconds']:.1f} s", flush=True)
    if args.run_dir is not None:
        write_run(args.run_dir, {**dataclasses.asdict(config), "samples": config.sample_count},
                  [{"step": int(step), "flow_time": float(t),
                    "standard_loss": float(result.standard.loss[i]),
                    "factorized_loss": float(result.factorized.loss[i]),
                    "standard_nuclear_norm": float(result.standard.nuclear_norm[i]),
                    "factorized_nuclear_norm": float(result.factorized.nuclear_norm[i])}
                   for i, (step, t) in enumerate(zip(result.steps, result.flow_time))], s)
    if args.json:
        emit_json(s)
    return 0
