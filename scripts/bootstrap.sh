#!/usr/bin/env bash
# Create or reuse .venv and install everything the demo and the tests need (idempotent).
# Re-installs only when setup.py / constraints.txt / the interface package change.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  echo "[bootstrap] creating $VENV with $($PY --version)"
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.mtl_grasp_installed"
want=$(cat setup.py constraints.txt mtl_grasp_msgs/CMakeLists.txt mtl_grasp_msgs/package.xml mtl_grasp_msgs/msg/*.msg scripts/bootstrap.sh scripts/build_msgs.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "[bootstrap] installing mtl_grasp[train,data,ros,ros-build,bag,dev,ref] into $VENV (first time: a few minutes)"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -c constraints.txt -e ".[train,data,ros,ros-build,bag,dev,ref]"
# the corruption package without its declared GUI opencv-python (docs/robustness.md)
"$VENV/bin/python" -m pip install -q --no-deps -c constraints.txt imagecorruptions-imaug
bash scripts/build_msgs.sh "$VENV"
echo "$want" > "$stamp"
echo "[bootstrap] done"
