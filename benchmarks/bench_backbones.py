"""Cost of iFiLM (MN eq. 4) in each MN backbone: forward + backward images/s, ifilm="all" vs "none".

Training mode, batch 32 of 32x32 RGB images, loss = mean of the squared features. The two variants
of a backbone are timed alternately (none, all, none, all, ...) so that load from other processes
hits both alike; medians are reported with the load average before and after. Prints one JSON
object and writes it to benchmarks/results/backbones_<device>.json.

Usage: python benchmarks/bench_backbones.py [--backbones convnet4 resnet29 resnet56 densenet40]
       [--batch 32] [--image-size 32] [--repeats 5] [--device cpu|cuda] [--amp] [--channels-last] [--compile]
       [--threads N]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

from nslviz.models import build_backbone
from _results import device_name, save_result, synchronize  # noqa: E402  (benchmarks/_results.py)


def load_average() -> float | None:
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def make_step(net, images, amp: bool):
    def step():
        net.zero_grad(set_to_none=True)
        with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=amp):
            features = net(images)
        features.float().square().mean().backward()
        synchronize(images.device)
    return step


def time_alternately(steps: dict, repeats: int) -> dict:
    for step in steps.values():                       # warm-up (kernel selection, allocator)
        step()
        step()
    times = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="+", default=["convnet4", "resnet29", "resnet56", "densenet40"])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile both networks (the trainer's --compile); the warm-up steps compile")
    parser.add_argument("--threads", type=int, default=None,
                        help="intra-op threads (default: torch's); 1 avoids OpenMP spin-waits on a busy machine")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    load_before = load_average()
    rows = {}
    for name in args.backbones:
        torch.manual_seed(0)
        images = torch.rand(args.batch, 3, args.image_size, args.image_size, device=device)
        images = images.contiguous(memory_format=memory_format)
        steps = {}
        for placement in ("none", "all"):
            net = build_backbone(name, image_size=args.image_size, ifilm=placement)
            net = net.to(device, memory_format=memory_format).train()
            steps[placement] = make_step(torch.compile(net) if args.compile else net, images, args.amp)
        seconds = time_alternately(steps, args.repeats)
        rows[name] = {"none_images_per_s": round(args.batch / seconds["none"], 1),
                      "all_images_per_s": round(args.batch / seconds["all"], 1),
                      "all_over_none_time": round(seconds["all"] / seconds["none"], 3)}
        print(name, rows[name], flush=True)
    result = {"benchmark": "backbones_ifilm", "mode": "train forward+backward", "batch": args.batch,
              "image_size": args.image_size, "device": str(device), "amp_bf16": args.amp,
              "channels_last": args.channels_last, "compiled": args.compile, "repeats": args.repeats,
              "threads": torch.get_num_threads(),
              "torch": torch.__version__, "device_name": device_name(device), "machine": platform.machine(),
              "load_average_before": load_before, "load_average_after": load_average(), "backbones": rows}
    save_result(result, f"backbones_{device.type}" + ("_compiled" if args.compile else ""), args.out)
    return result


if __name__ == "__main__":
    main()
