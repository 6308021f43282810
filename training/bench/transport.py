"""`python -m training bench transport`: large images between two processes, with and without the
Fast DDS shared-memory profile (config/fastdds_shm.xml).

For each rate and each configuration a publisher process (`mtl_grasp.ros.synthetic_camera publish`:
RGB rgb8 + depth 32FC1 + camera_info, best effort) and a counting process (`... count`, best-effort
subscriptions like the node's) run on a private, localhost-only DDS domain; the table gives the
frames published and the distinct RGB and depth frames that arrived. "default" = Fast DDS's built-in
transports (512 KB shared-memory segment), "shm profile" = FASTDDS_DEFAULT_PROFILES_FILE set to the
packaged profile in both processes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from training.bench.common import require_positive

HELP = "large RGB-D images across two processes: Fast DDS default vs the shared-memory profile"
CONFIGS = ("default", "shm profile")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--rates", default="5,30", help="comma-separated frame rates, Hz")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds of streaming per run")
    parser.add_argument("--repeats", type=int, default=1, help="runs per rate and configuration")


def _env(domain: int, config: str) -> dict[str, str]:
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    env.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)
    env["MTL_GRASP_FASTDDS_PROFILE"] = "none" if config == "default" else "packaged"
    return env


def run_pair(domain: int, config: str, rate: float, args: argparse.Namespace) -> tuple[int, dict]:
    """(frames published, {"rgb": received, "depth": received}) of one publisher/counter run."""
    base = [sys.executable, "-m", "mtl_grasp.ros.synthetic_camera"]
    size = ["--width", str(args.width), "--height", str(args.height)]
    ns = ["--ros-args", "-r", "__ns:=/bench_cam"]
    env = _env(domain, config)
    counter = subprocess.Popen([*base, "count", "--duration", str(args.duration + 60), *ns],
                               env=env, stdout=subprocess.PIPE, text=True)
    try:
        cmd = [*base, "publish", *size, "--rate", str(rate), "--duration", str(args.duration), *ns]
        pub = subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=args.duration + 120, check=True
        )
        out, _ = counter.communicate(timeout=120)
    finally:
        if counter.poll() is None:
            counter.kill()
            counter.wait()
    return int(pub.stdout.split()[-1]), json.loads(out.strip().splitlines()[-1])


def run(args: argparse.Namespace) -> int:
    from mtl_grasp.ros.domain import reserved_domain_id

    require_positive(args, "width", "height", "repeats")
    rates = [float(r) for r in args.rates.split(",")]
    if any(r <= 0 for r in rates) or args.duration <= 0:
        raise ValueError(f"--rates and --duration must be positive, got {args.rates!r}, {args.duration}")
    print(f"{args.width}x{args.height} rgb8 + 32FC1, best effort, two processes, {args.duration:g} s per run")
    print(f"{'rate':>6}  {'config':<12} {'published':>9} {'rgb recv':>9} {'depth recv':>10}")
    with reserved_domain_id() as domain:
        for rate in rates:
            for config in CONFIGS:
                for _ in range(args.repeats):
                    sent, got = run_pair(domain, config, rate, args)
                    rgb, depth = (f"{got[k]:>4} ({got[k] / max(sent, 1):4.0%})" for k in ("rgb", "depth"))
                    print(f"{rate:>4g} Hz  {config:<12} {sent:>9} {rgb:>9} {depth:>10}", flush=True)
    load = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} logical CPUs, 1-min load average {load:.1f}")
    return 0
