#!/usr/bin/env bash
# Build the mtl_grasp_msgs interface package with cmake against the ROS wheels in a virtualenv
# and install it into that virtualenv's prefix (no sourcing needed afterwards). See docs/ros.md.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=$(cd "${1:-.venv}" && pwd)
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
export CMAKE_PREFIX_PATH="$VENV" AMENT_PREFIX_PATH="$VENV" PATH="$VENV/bin:$PATH"
cmake -S mtl_grasp_msgs -B "$build" -DCMAKE_INSTALL_PREFIX="$VENV" -DPython3_EXECUTABLE="$VENV/bin/python" \
  -DBUILD_TESTING=OFF >"$build/configure.log" 2>&1 || { cat "$build/configure.log"; exit 1; }
cmake --build "$build" -j2 >"$build/build.log" 2>&1 || { tail -50 "$build/build.log"; exit 1; }
cmake --install "$build" >/dev/null
"$VENV/bin/python" -c "from mtl_grasp_msgs.msg import InstanceArray; print('[build_msgs] mtl_grasp_msgs OK')"
