"""The repository is two ROS packages: colcon must find both (with both base paths, as docs/ros.md says)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _colcon() -> str:
    exe = Path(sys.executable).with_name("colcon")
    if exe.exists():
        return str(exe)
    found = shutil.which("colcon")
    if found is None:
        pytest.skip("colcon is not installed (dev extra)")
    return found


def _list(*base_paths: str) -> dict[str, str]:
    out = subprocess.run(
        [_colcon(), "--log-base", os.devnull, "list", "--base-paths", *base_paths],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=120,
    ).stdout
    rows = [line.split("\t") for line in out.strip().splitlines() if line.strip()]
    return {name: build_type for name, _path, build_type in rows}


def test_colcon_finds_both_packages_with_both_base_paths() -> None:
    packages = _list(".", "mtl_grasp_msgs")
    assert packages == {"mtl_grasp": "(ros.ament_python)", "mtl_grasp_msgs": "(ros.ament_cmake)"}


def test_colcon_does_not_descend_into_the_root_package() -> None:
    # Why the robot build names both paths: the nested interface package is invisible otherwise.
    assert _list(".") == {"mtl_grasp": "(ros.ament_python)"}


def test_package_xml_declares_the_interface_package() -> None:
    text = (ROOT / "package.xml").read_text()
    import re

    found = re.search(r'<depend(?: version_gte="([0-9.]+)")?>mtl_grasp_msgs</depend>', text)
    assert found, "package.xml does not depend on mtl_grasp_msgs"
    msgs_xml = (ROOT / "mtl_grasp_msgs" / "package.xml").read_text()
    msgs_version = re.search(r"<version>([0-9.]+)</version>", msgs_xml)
    assert found.group(1) in (None, msgs_version.group(1))  # the 3-D fields need mtl_grasp_msgs >= 0.2.0
    assert "<build_type>ament_python</build_type>" in text
