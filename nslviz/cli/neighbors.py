"""python -m nslviz neighbors: what the learned neighbors of a trained MN run are (MN sec. 4.2, App. A.8/A.9).

    python -m nslviz train --dataset digits --label-kind coarse --method mn --run-dir runs/n/mn
    python -m nslviz train --dataset digits --label-kind coarse --method vanilla --run-dir runs/n/vanilla
    python -m nslviz neighbors --run-dir runs/n/mn --vanilla-run-dir runs/n/vanilla --json

Prints the retrieval purity of the dictionary entries (share of each entry's k nearest test images
that are of its class argmax v_j) next to random training images and random directions as queries
and, for runs trained on coarse labels, the kNN accuracy on the fine labels (sub-category
discovery, App. A.9).
"""
from __future__ import annotations

from ..analysis.neighbors import DEFAULT_K
from .common import emit_json, folder_path, positive_int, seed_value


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("neighbors", help="retrieval and sub-category discovery with the learned neighbors of a run",
                              description=__doc__)
    p.add_argument("--run-dir", type=folder_path, required=True, help="run directory of a train() run (MN for the entry retrieval)")
    p.add_argument("--vanilla-run-dir", type=folder_path, default=None, help="a vanilla run on the same data, for the kNN comparison")
    p.add_argument("--k", type=positive_int, default=DEFAULT_K, help="neighbors retrieved / voting (paper: 5)")
    p.add_argument("--baseline-size", type=positive_int, default=None,
                   help="random training images used as baseline queries (default: as many as entries)")
    p.add_argument("--seed", type=seed_value, default=0, help="seed of the baseline's random training images")
    p.add_argument("--device", default="cpu", help="cpu (default), auto, cuda, cuda:1")
    p.add_argument("--batch-size", type=positive_int, default=500, help="images per forward pass")
    p.add_argument("--json", action="store_true", help="end the output with one JSON object")
    p.set_defaults(run=run, subparser=p)


def _percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def run(args) -> int:
    from ..experiments.neighbors import analyze_neighbors
    report = analyze_neighbors(args.run_dir, args.vanilla_run_dir, args.k, baseline_size=args.baseline_size,
                               seed=args.seed, device=args.device, batch_size=args.batch_size)
    summary = report.summary()
    print(f"neighbors: {report.method} run {report.run_dir} on {report.data.name} "
          f"({report.label_kind} labels, {report.data.num_classes} classes), k={report.k}", flush=True)
    if report.retrieval is not None:
        retrieval = summary["retrieval"]
        entries, baseline, null = retrieval["entries"], retrieval["baseline"], retrieval["random_directions"]
        print(f"  entry retrieval: purity {_percent(entries['purity'])} over {entries['queries']} entries "
              f"(all {report.k} of the entry's class: {_percent(entries['all_correct'])}; same label, any class: "
              f"{_percent(entries['label_consistency'])}) | random training images as queries: purity "
              f"{_percent(baseline['purity'])} | random directions: same label {_percent(null['label_consistency'])}",
              flush=True)
        if "fine_consistency" in entries:
            print(f"  same sub-category among the {report.k}: entries {_percent(entries['fine_consistency'])} | "
                  f"training images {_percent(baseline['fine_consistency'])} | random directions "
                  f"{_percent(null['fine_consistency'])}", flush=True)
    for method, result in report.subcategory.items():
        print(f"  sub-category kNN ({method}, on {result['representation']}): fine "
              f"{_percent(result['fine_acc'])} of {result['fine_classes']} classes | coarse "
              f"{_percent(result['coarse_acc'])} of {result['coarse_classes']}", flush=True)
    if report.subcategory:
        paper = summary["paper_subcategory"]
        print(f"  paper (CIFAR-100, DenseNet40, S=5000): fine MN {paper['mn']['fine']}% vs vanilla "
              f"{paper['vanilla']['fine']}% | coarse MN {paper['mn']['coarse']}% vs vanilla "
              f"{paper['vanilla']['coarse']}%", flush=True)
    for note in report.notes:
        print(f"  note: {note}", flush=True)
    if args.json:
        emit_json(summary)
    return 0
