#!/usr/bin/env bash
# Flakiness check: run CI (`CI=true bash .ci/run`) N times, each on a fresh clone of this repository's
# HEAD with its own new .venv, one after the other, and print one line per run.
#   bash scripts/fresh_clone_runs.sh [N=5] [WORKDIR=/tmp/mtl_grasp_fresh_runs]
# Logs: WORKDIR/run<i>.log; summary: WORKDIR/summary. Exit 1 when any run failed.
set -uo pipefail
n=${1:-5}
work=${2:-/tmp/mtl_grasp_fresh_runs}
repo=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$work"
summary=$work/summary
echo "HEAD $(git -C "$repo" rev-parse --short HEAD), $n fresh clones" | tee "$summary"
failed=0
for i in $(seq 1 "$n"); do
  clone=$work/clone$i
  rm -rf "$clone"
  git clone -q "$repo" "$clone"
  start=$(date +%s); load0=$(cut -d' ' -f1 /proc/loadavg)
  (cd "$clone" && CI=true bash .ci/run > "$work/run$i.log" 2>&1); rc=$?
  load1=$(cut -d' ' -f1 /proc/loadavg)
  [ "$rc" -eq 0 ] || failed=1
  echo "run $i: rc=$rc, $(( $(date +%s) - start )) s, load $load0 -> $load1: $(tail -1 "$work/run$i.log")" | tee -a "$summary"
  rm -rf "$clone"
done
exit $failed
