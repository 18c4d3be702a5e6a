"""python -m nslviz few-shot: few-shot learning with neural similarity, NSL sec. 7.2 and Table 6
(nslviz.experiments.few_shot; notebook 10).

    python -m nslviz few-shot --quick --nsl dynamic_dns --json      # notebook 10's quick mode: glyphs, CPU, under a minute
    python -m nslviz few-shot --nsl static_dns --method finetune --episodes 100     # the protocol's lengths, on glyphs
    python -m nslviz few-shot --dataset mini-imagenet --nsl dynamic_dns --device auto      # Table 6's protocol
    python -m nslviz few-shot --dataset mini-imagenet --nsl static_dns --method maml --device auto
    python -m nslviz few-shot --dataset mini-imagenet --nsl dynamic_dns --backbone cnn9 --device auto   # last row

Pretrains a CNN-4 (4 × 32 3×3 convs; --backbone cnn9: the CNN-9 of Table 6's last row) with the chosen
NSL convolutions on the base classes (Adam 1e-3), then adapts on N-way K-shot episodes of the novel
classes: "finetune" retrains a new classifier (and, for static NSN, M) with SGD 0.01 / momentum 0.9 /
dampening 0.9 / weight decay 1e-3 for 100 epochs; "maml" meta-learns static M and the classifier (eq. 7;
5 inner steps at 0.2 on both, then 20 on the classifier). Prints the mean query accuracy ± the 95 %
interval over episodes, beside Table 6's number.
Mini-ImageNet is not downloaded: data/README.md says where its images and split files go.
"""
from __future__ import annotations

from ..experiments.few_shot import FEW_SHOT_BACKBONES, FEW_SHOT_METHODS, FEW_SHOT_NSL, QUICK_FEW_SHOT, FewShotConfig
from .common import (add_progress_argument, emit_json, integer_at_least, nonnegative_int, positive_float, positive_int,
                     refuse_chosen)

integer_at_least_two = integer_at_least(2)


def add_parser(subparsers) -> None:
    from ..datasets.images import available_few_shot_datasets
    d = FewShotConfig()
    p = subparsers.add_parser("few-shot", help="NSL few-shot learning: N-way K-shot episodes, Table 6",
                              description=__doc__)
    p.add_argument("--dataset", choices=available_few_shot_datasets(), default=d.dataset,
                   help="glyphs: embedded, generated; mini-imagenet: Table 6 (files under the data folder)")
    p.add_argument("--data-dir", default=None, help="the data folder (default: $NSLVIZ_DATA, else the repository's data/)")
    p.add_argument("--nsl", choices=FEW_SHOT_NSL, default=d.nsl, help="the convolutions of the network")
    p.add_argument("--backbone", choices=FEW_SHOT_BACKBONES, default=d.backbone,
                   help="cnn4: Table 6's CNN-4 rows; cnn9: its last row (dynamic NSN on the CIFAR CNN-9)")
    p.add_argument("--method", choices=FEW_SHOT_METHODS, default=d.method,
                   help="finetune: the paper's test-time SGD; maml: meta-learned static M (static_dns or none)")
    p.add_argument("--way", type=integer_at_least_two, default=d.way)
    p.add_argument("--shot", type=positive_int, default=d.shot)
    p.add_argument("--query", type=positive_int, default=d.query, help="query images per class")
    p.add_argument("--episodes", type=positive_int, default=d.episodes, help="test episodes")
    p.add_argument("--image-size", type=positive_int, default=None, help="default: the dataset's (84 / 32)")
    p.add_argument("--classes", type=positive_int, default=None, help="glyphs: number of classes (default: 100)")
    p.add_argument("--per-class", type=positive_int, default=None, help="glyphs: images per class (default: 60)")
    p.add_argument("--pretrain-epochs", type=nonnegative_int, default=d.pretrain_epochs)
    p.add_argument("--batch-size", type=positive_int, default=d.batch_size, help="pretraining batch")
    p.add_argument("--lr", type=positive_float, default=d.lr, help="pretraining Adam learning rate")
    p.add_argument("--finetune-epochs", type=nonnegative_int, default=d.finetune_epochs)
    p.add_argument("--meta-iterations", type=nonnegative_int, default=d.meta_iterations, help="MAML outer steps")
    p.add_argument("--meta-batch", type=positive_int, default=d.meta_batch, help="MAML tasks per outer step")
    p.add_argument("--meta-lr", type=positive_float, default=d.meta_lr)
    p.add_argument("--inner-steps", type=nonnegative_int, default=d.inner_steps, help="MAML steps on M and the classifier")
    p.add_argument("--classifier-steps", type=nonnegative_int, default=d.classifier_steps,
                   help="MAML steps on the classifier only, after the inner steps")
    p.add_argument("--inner-step-size", type=positive_float, default=d.inner_step_size)
    p.add_argument("--first-order", action="store_true", help="first-order MAML (default: second order)")
    p.add_argument("--episode-batch", type=positive_int, default=d.episode_batch,
                   help="test episodes adapted together (memory against speed)")
    p.add_argument("--seed", type=nonnegative_int, default=d.seed)
    p.add_argument("--device", default=d.device, help="cpu (default), auto, cuda or cuda:N")
    p.add_argument("--quick", action="store_true", help="notebook 10's quick mode: the generated glyphs at 32 px, "
                                                        "short runs, CPU (a few tens of seconds a run)")
    add_progress_argument(p)
    p.add_argument("--json", action="store_true", help="end the output with one JSON object")
    p.set_defaults(run=run, subparser=p)


# the options that give what --quick sets (QUICK_FEW_SHOT; its dataset_options are --classes, --per-class)
QUICK_OPTIONS = [*(name for name in QUICK_FEW_SHOT if name != "dataset_options"), "classes", "per_class"]


def run(args) -> int:
    from ..experiments.few_shot import quick_few_shot_config, run_few_shot
    if args.quick:                                   # an option away from its default was given
        refuse_chosen([name for name in QUICK_OPTIONS if getattr(args, name) != args.subparser.get_default(name)],
                      "--quick", "chooses {}", "the generated glyphs on the CPU, short runs")
    options = {key: value for key, value in (("num_classes", args.classes), ("per_class", args.per_class))
               if value is not None}
    if options and args.dataset != "glyphs":
        raise ValueError(f"--classes and --per-class describe the generated glyphs; {args.dataset} has its own classes")
    config = FewShotConfig(dataset=args.dataset, data_dir=args.data_dir, nsl=args.nsl, backbone=args.backbone,
                           method=args.method, way=args.way, shot=args.shot, query=args.query, episodes=args.episodes,
                           image_size=args.image_size, dataset_options=options, pretrain_epochs=args.pretrain_epochs,
                           batch_size=args.batch_size, lr=args.lr, finetune_epochs=args.finetune_epochs,
                           meta_iterations=args.meta_iterations, meta_batch=args.meta_batch, meta_lr=args.meta_lr,
                           inner_steps=args.inner_steps, classifier_steps=args.classifier_steps,
                           inner_step_size=args.inner_step_size, first_order=args.first_order,
                           episode_batch=args.episode_batch, seed=args.seed, device=args.device,
                           progress=not args.no_progress)
    if args.quick:
        config = quick_few_shot_config(config)
    s = run_few_shot(config).summary()
    paper = s["paper"]
    beside = (f" | Table 6 on Mini-ImageNet, {paper['row']} ({paper['backbone']}): {paper['accuracy']:.2f} ± "
              f"{paper['interval95']:.2f}" if paper else " | Table 6 reports 5-way 5-shot only")
    print(f"few-shot {s['dataset']} {s['way']}-way {s['shot']}-shot, {s['nsl']} {s['backbone']} {s['method']}: "
          f"{s['accuracy']:.2f} ± {s['interval95']:.2f} % over {s['episodes']} episodes{beside} | "
          f"{s['parameters']:,} backbone parameters | {sum(s['seconds'].values()):.1f} s", flush=True)
    if args.json:
        emit_json(s)
    return 0
