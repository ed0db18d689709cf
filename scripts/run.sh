#!/usr/bin/env bash
# Sets everything up (Debian packages, build) and runs kvmxdp:
#   scripts/run.sh                                      demo on a private netns topology
#   scripts/run.sh --bridge virbr0 --uplink wlp0s20f3   attach to real interfaces (foreground daemon)
# As root, or as a user with sudo (it runs itself through sudo).
set -euo pipefail
source "$(dirname "$0")/as-root.sh" "$0" "$@"
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)"
exec bash scripts/demo.sh "$@"
