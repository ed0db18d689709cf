#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# bench/gc_cost.sh: CPU cost of the daemon's garbage-collection sweep
# (loader/control/gc.cpp gc_sweep, unchanged) at 1M conntrack entries
# (docs/pitfalls.md, gc-cost).  Runs build/bench/kvx-gccost, which creates
# standalone BPF hash maps of the ABI's types (no network, no pins, nothing
# outside the process: the maps go with it), fills 1M flows and their
# bindings, half expired, and times one sweep that deletes the expired half
# and the steady-state sweeps after it.
#
# Usage: bench/gc_cost.sh [BUILD_DIR] [kvx-gccost options...]
#   BUILD_DIR  a configured build tree (default: build); the target
#              kvx-gccost is built there first (-j2).
#   options    --flows N (default 1000000), --flows-per-binding F (4),
#              --sweeps S (5), --prefix P (guest subnet /P, 24), --json
# Needs root (CAP_BPF) and ~250 MB of memory (the maps are preallocated:
# ~126 MB for 1M flows, plus the sweep's own copies of keys and values).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../build}
[[ $# -gt 0 ]] && shift
if [[ $(id -u) -ne 0 ]]; then
	echo "gc_cost.sh: needs root (BPF maps)" >&2
	exit 77
fi
[[ -f $build/CMakeCache.txt ]] || { echo "gc_cost.sh: $build is not a configured build tree" >&2; exit 2; }
cmake --build "$build" -j2 --target kvx-gccost >/dev/null
args=("$@")
((${#args[@]})) || args=(--flows 1000000)
echo "# kvx-gccost ${args[*]} on $(uname -r), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'))"
echo "# load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
"$build/bench/kvx-gccost" "${args[@]}"
