"""`python -m training bench model`: parameter counts, GFLOPs and forward/backward time of AmodalRCNN.

Everything is measured on a synthetic bin scene (random RGB-D, ``--objects`` rectangular objects per
image) with random weights, so the number of foreground ROIs (which drives the mask-head cost) is that
of an untrained network: ROI sampling always contains the ground-truth boxes.
"""

from __future__ import annotations

import argparse
import statistics
import time

from training.bench.common import add_device_arguments, bench_model, machine, require_positive, torch_device
from training.bench.scenes import add_fg_rois_argument, fg_rois, random_scene

HELP = "AmodalRCNN: parameters (total/shared/per head), GFLOPs, forward and forward+backward time"
DESCRIPTION = (
    "Measures the RGB-D amodal network with random weights on a synthetic scene. Times are medians over "
    "--repeat runs after --warmup runs; GFLOPs come from training.bench.flops (torch's FLOP formulas, "
    "2 FLOPs per multiply-add; torchvision's roi_align/nms are not counted)."
)

RESNET18_PARAMS = 11_689_512  # torchvision resnet18 incl. the 1000-way fc (512*1000 + 1000)
RESNET18_FC_PARAMS = 513_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_device_arguments(parser)
    parser.add_argument("--size", type=int, default=512, help="square input size for timing (default 512)")
    parser.add_argument("--batch", type=int, default=4, help="batch size for timing (default 4)")
    parser.add_argument("--flops-size", type=int, default=512, help="input size for GFLOPs (default 512)")
    parser.add_argument("--flops-batch", type=int, default=4, help="batch size for GFLOPs (default 4)")
    parser.add_argument("--no-flops", action="store_true", help="skip the GFLOPs measurement")
    parser.add_argument("--no-time", action="store_true", help="skip the timing measurement")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per measurement (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first (default 1)")
    parser.add_argument("--objects", type=int, default=8, help="objects per synthetic image (default 8)")
    parser.add_argument("--fpn-channels", type=int, default=256, help="FPN and head width (default 256)")
    parser.add_argument("--amp", choices=("none", "bf16", "fp16"), default="none", help="autocast (CUDA)")
    add_fg_rois_argument(parser)


def run(args: argparse.Namespace) -> int:
    import torch


    require_positive(args, "size", "batch", "flops_size", "flops_batch", "repeat", "objects", "fpn_channels")
    planted = fg_rois(args)
    device = torch_device(args)
    model = bench_model(device, args.fpn_channels, planted)
    config = model.config

    print(f"machine: {machine(device)}")
    print(f"config: fpn_channels={config.fpn_channels} head_channels={config.head_channels}, "
          f"planted foreground proposals per image: {args.fg_rois}")
    _print_parameters(model)
    if not args.no_flops:
        _print_flops(torch, model, device, args.flops_size, args.flops_batch, args.objects)
    if not args.no_time:
        _print_times(torch, model, device, args, args.size, args.batch)
    return 0


def _count(params) -> int:
    return sum(p.numel() for p in params)


def _print_parameters(model) -> None:
    enc = model.encoder
    total = _count(p for p in model.parameters() if p.requires_grad)
    shared = _count(model.shared_parameters())
    print("\nparameters (trainable)")
    print(f"  total                 {total:>12,}")
    print(f"  shared (-> Z)         {shared:>12,}")
    for name, module in (("rgb ResNet18", enc.rgb), ("depth ResNet18", enc.depth), ("fusion", enc.fusion),
                         ("FPN", enc.fpn)):  # fmt: skip
        print(f"    {name:<19} {_count(module.parameters()):>12,}")
    print(f"  task-specific         {_count(model.task_parameters()):>12,}")
    for name, params in model.parameter_groups().items():
        if name != "shared":
            print(f"    {name:<19} {_count(params):>12,}")
    two = 2 * RESNET18_PARAMS
    print(
        f"  reference: 2 x torchvision ResNet18 = {two:,} incl. fc; "
        f"without fc {two - 2 * RESNET18_FC_PARAMS:,} (the depth conv1 has 1 input channel: -6,272)"
    )


def _autocast(torch, device, amp: str):
    if amp == "none":
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def _print_flops(torch, model, device, size: int, batch: int, objects: int) -> None:
    from training.bench.flops import FlopCount

    rgb, depth, targets = random_scene(size, batch, objects, device)
    rows = []
    model.train()
    torch.manual_seed(0)
    with FlopCount() as counter:
        model.features(rgb, depth)
    rows.append(("shared encoder forward (features)", counter.total))
    torch.manual_seed(0)
    with FlopCount() as counter:
        losses = model(rgb, depth, targets)
    rows.append(("training forward (7 losses)", counter.total))
    with FlopCount() as counter:
        sum(losses.values()).backward()
    rows.append(("backward", counter.total))
    model.zero_grad(set_to_none=True)
    model.eval()
    with torch.no_grad(), FlopCount() as counter:
        detections = model(rgb, depth)
    n = sum(len(d["boxes"]) for d in detections)
    rows.append((f"inference forward ({n} detections)", counter.total))
    model.train()
    print(f"\nGFLOPs at {batch} x {size}x{size} ({objects} objects per image)")
    for name, flops in rows:
        print(f"  {name:<40} {flops / 1e9:>10.1f}")


def _time(torch, device, fn, warmup: int, repeat: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _print_times(torch, model, device, args, size: int, batch: int) -> None:
    rgb, depth, targets = random_scene(size, batch, args.objects, device)

    def forward():
        model.train()
        torch.manual_seed(0)
        with _autocast(torch, device, args.amp):
            return model(rgb, depth, targets)

    def forward_backward():
        sum(forward().values()).backward()
        model.zero_grad(set_to_none=True)

    def inference():
        model.eval()
        with torch.no_grad(), _autocast(torch, device, args.amp):
            model(rgb, depth)
        model.train()

    def features_only():
        with torch.no_grad(), _autocast(torch, device, args.amp):
            model.features(rgb, depth)

    where = f"{batch} x {size}x{size} on {device.type} (amp={args.amp})"
    print(f"\ntime per batch at {where}, median of {args.repeat}")
    measurements = (
        ("shared encoder forward (no grad)", features_only),
        ("training forward", forward),
        ("training forward+backward", forward_backward),
        ("inference forward", inference),
    )
    for name, fn in measurements:
        seconds = _time(torch, device, fn, args.warmup, args.repeat)
        print(f"  {name:<40} {seconds * 1e3:>10.1f} ms")
