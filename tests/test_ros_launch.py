"""launch/perception.launch.py: launch_ros is not on PyPI, so the file is parsed (ast) and its
parameter names and remaps are checked against config/perception.yaml and the node; where
launch_ros is installed (a robot), the launch description is also built for real."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest
import yaml

from mtl_grasp.ros.parameters import PARAMETER_NAMES, default_params_file

REPO = Path(__file__).resolve().parents[1]
LAUNCH = REPO / "launch" / "perception.launch.py"


def _call_kwargs(tree: ast.AST, func_name: str) -> list[dict[str, ast.expr]]:
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        if getattr(node.func, "id", getattr(node.func, "attr", None)) == func_name:
            found.append({kw.arg: kw.value for kw in node.keywords})
    return found


@pytest.fixture(scope="module")
def tree() -> ast.AST:
    return ast.parse(LAUNCH.read_text(), filename=str(LAUNCH))


def test_launch_file_defines_generate_launch_description(tree):
    names = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
    assert "generate_launch_description" in names


def test_launch_parameters_exist_in_yaml_and_node(tree):
    yaml_params = yaml.safe_load(default_params_file().read_text())["/**"]["ros__parameters"]
    (node_kwargs,) = _call_kwargs(tree, "Node")
    assert ast.literal_eval(node_kwargs["executable"]) == "perception_node"
    assert ast.literal_eval(node_kwargs["package"]) == "mtl_grasp"
    dicts = [d for d in node_kwargs["parameters"].elts if isinstance(d, ast.Dict)]
    overridden = {ast.literal_eval(k) for d in dicts for k in d.keys}
    assert overridden, "the launch file overrides no parameter"
    assert overridden <= set(yaml_params) and overridden <= set(PARAMETER_NAMES)
    declared = {
        ast.literal_eval(kw["default_value"])
        for kw in _call_kwargs(tree, "DeclareLaunchArgument")
        if isinstance(kw["default_value"], ast.Constant)
    }
    # launch-argument defaults that mirror YAML defaults must agree with the YAML
    assert str(yaml_params["model_path"]) in declared
    assert str(yaml_params["score_threshold"]) in declared


def test_launch_applies_the_fast_dds_profile(tree):
    from mtl_grasp.ros.transport import ENV_FASTDDS, PROFILE_NAME, profile_path

    (node_kwargs,) = _call_kwargs(tree, "Node")
    env = node_kwargs["additional_env"]
    assert [ast.literal_eval(k) for k in env.keys] == [ENV_FASTDDS]
    assert ast.unparse(env.values[0]) == "LaunchConfiguration('fastdds_profile')"
    assert f'"{PROFILE_NAME}"' in LAUNCH.read_text() and profile_path().is_file()
    setup = (REPO / "setup.py").read_text()
    assert 'glob("config/*.xml")' in setup  # installed next to perception.yaml


def test_launch_remaps_the_node_inputs(tree):
    from mtl_grasp.ros.perception_node import TOPIC_CAMERA_INFO, TOPIC_DEPTH, TOPIC_RGB

    (node_kwargs,) = _call_kwargs(tree, "Node")
    sources = {ast.literal_eval(t.elts[0]) for t in node_kwargs["remappings"].elts}
    assert sources == {TOPIC_RGB, TOPIC_DEPTH, TOPIC_CAMERA_INFO}
    declared = {
        ast.literal_eval(c.args[0])
        for c in ast.walk(tree)
        if isinstance(c, ast.Call) and getattr(c.func, "id", "") == "DeclareLaunchArgument"
    }
    used = {
        ast.literal_eval(c.args[0])
        for c in ast.walk(tree)
        if isinstance(c, ast.Call) and getattr(c.func, "id", "") == "LaunchConfiguration"
    }
    assert used == declared  # every argument is used and every used one is declared


def test_launch_description_builds_where_launch_ros_exists():
    pytest.importorskip("launch_ros")
    spec = importlib.util.spec_from_file_location("perception_launch", LAUNCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        description = module.generate_launch_description()
    except LookupError as exc:  # mtl_grasp not installed into the ament index (pip path)
        pytest.skip(f"mtl_grasp share directory not installed: {exc}")
    assert len(description.entities) == 9  # 8 arguments and the node


def _colcon() -> str:
    import shutil
    import sys

    exe = Path(sys.executable).parent / "colcon"
    found = str(exe) if exe.exists() else shutil.which("colcon")
    if not found:
        pytest.skip("colcon not installed (pip install colcon-common-extensions)")
    return found


def test_colcon_finds_both_packages_only_with_both_base_paths(tmp_path):
    """colcon does not descend into a package, so the robot build must name the nested one."""
    import subprocess

    def listed(*paths: Path) -> set[str]:
        cmd = [_colcon(), "list", "--names-only", "--base-paths", *map(str, paths)]
        done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return set(done.stdout.split())

    assert listed(REPO, REPO / "mtl_grasp_msgs") == {"mtl_grasp", "mtl_grasp_msgs"}
    assert "mtl_grasp_msgs" not in listed(REPO)


def test_node_help_lists_every_parameter():
    import subprocess
    import sys

    from mtl_grasp.ros.parameters import PARAMETER_NAMES

    out = subprocess.run(
        [sys.executable, "-m", "mtl_grasp.ros.perception_node", "--help"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    assert "usage: perception_node" in out
    for name in PARAMETER_NAMES:
        assert f"  {name} (" in out
