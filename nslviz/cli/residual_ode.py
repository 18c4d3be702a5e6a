"""python -m nslviz residual-ode: NSL sec. 5.2, stacks of NSL layers whose similarity makes each one
a residual step integrate the heat equation; their error against the exact solution, for forward
Euler and Heun's method (nslviz.experiments.residual_ode)."""
from __future__ import annotations

from ..experiments.residual_ode import METHODS, ResidualODEConfig, convergence_order, run_residual_ode
from .common import emit_json, positive_float, positive_int, seed_value


def add_parser(subparsers) -> None:
    defaults = ResidualODEConfig()                  # margin: derived from --t-end
    p = subparsers.add_parser(
        "residual-ode", help="NSL sec. 5.2: a stack of NSL layers is an ODE solver",
        description="Stack NSL layers (random stored kernels, a similarity that makes each one a residual step) "
                    "to integrate the heat equation dx/dt = Lx on a photo region; print each stack's RMS error "
                    "against the exact solution and each solver's order.")
    p.add_argument("--t-end", type=positive_float, default=defaults.t_end, help="integrate from 0 to this time")
    p.add_argument("--layers", type=positive_int, nargs="+", default=list(defaults.layers),
                   help="stack depths n (Δt = t_end / n)")
    p.add_argument("--size", type=positive_int, default=defaults.size, help="photo region in pixels (3 to 71)")
    p.add_argument("--margin", type=int, default=None,
                   help="zero margin around it, in pixels (default: 5·√(2 t_end), the least that keeps the heat "
                        "off the border)")
    p.add_argument("--seed", type=seed_value, default=defaults.seed, help="the stored kernels")
    p.add_argument("--json", action="store_true", help="end the output with one JSON object")
    p.set_defaults(run=run, subparser=p)


def run(args) -> int:
    config = ResidualODEConfig(t_end=args.t_end, layers=tuple(args.layers), size=args.size, margin=args.margin,
                               seed=args.seed)
    result = run_residual_ode(config)
    print("layers      Δt  " + "  ".join(f"{m:>9}" for m in METHODS) + "   (RMS error against the exact solution)",
          flush=True)
    for n, dt in result.steps.items():
        print(f"{n:6d} {dt:7.4f}  " + "  ".join(f"{result.errors[m][n]:9.2e}" for m in METHODS), flush=True)
    orders = []
    for method in METHODS:
        try:
            orders.append(f"{method} {convergence_order(result.errors[method], result.steps):.2f}")
        except ValueError:
            orders.append(f"{method} – (fewer than two depths with Δt < 1/4)")
    print(f"order (slope of log error over log Δt, Δt < 1/4): {', '.join(orders)}; one Euler layer against "
          f"x + Δt·Lx: {result.residual_difference:.1e}; {result.seconds:.1f} s", flush=True)
    if args.json:
        emit_json(result.summary())
    return 0
