"""The robot-side packages must work without the training stack: import every module of
mtl_grasp.runtime / data / evaluation / ros and run a Detector in a subprocess where importing torch,
torchvision or training raises."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from test_runtime_toy import build_toy_model

REPO = Path(__file__).resolve().parents[1]

CHILD = textwrap.dedent(
    """
    import importlib, pkgutil, sys

    BLOCKED = ("torch", "torchvision", "training")

    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"blocked import of {name!r}: mtl_grasp must not need the training stack")
            return None

    sys.meta_path.insert(0, Block())
    imported = []
    for package in ("mtl_grasp.runtime", "mtl_grasp.data", "mtl_grasp.evaluation", "mtl_grasp.ros"):
        try:
            pkg = importlib.import_module(package)
        except ModuleNotFoundError as exc:
            if exc.name == package:
                continue  # that part is not written (yet)
            raise
        imported.append(package)
        for info in pkgutil.walk_packages(pkg.__path__, package + "."):
            importlib.import_module(info.name)
            imported.append(info.name)

    import numpy as np
    from mtl_grasp.runtime import Detector

    det = Detector(sys.argv[1], providers="cpu")
    out = det(np.full((48, 64, 3), 255, np.uint8), np.full((48, 64), 650, np.uint16))
    assert len(out) == 2, len(out)
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    assert not leaked, leaked
    print("OK", len(imported), " ".join(imported))
    """
)


def test_runtime_and_robot_packages_import_without_torch(tmp_path: Path) -> None:
    model = build_toy_model(tmp_path / "toy.onnx")
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(model)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("OK"), proc.stdout
    assert "mtl_grasp.runtime.detector" in proc.stdout


def test_blocker_really_blocks() -> None:
    """Guard against a vacuous pass: the same finder must stop a direct torch import."""
    code = CHILD.split("imported = []")[0] + "import torch\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "blocked import of 'torch'" in proc.stderr
