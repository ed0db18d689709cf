#!/usr/bin/env bash
# Sets everything up (Debian packages, build) and runs kvmxdp:
#   sudo scripts/run.sh                                      demo on a private netns topology
#   sudo scripts/run.sh --bridge virbr0 --uplink wlp0s20f3   attach to real interfaces (foreground daemon)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)"
exec bash scripts/demo.sh "$@"
