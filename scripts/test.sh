#!/usr/bin/env bash
# Sets everything up (Debian packages, build) and runs the whole test suite:
# unit tests (C++ and BPF programs), the fuzzer and the netns integration
# tests (vm-tests/).  As root, or as a user with sudo (it runs itself through sudo).
#   scripts/test.sh [ctest args...]     e.g. -L unit, -L vm, -R masquerade
set -euo pipefail
source "$(dirname "$0")/as-root.sh" "$0" "$@"
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)"
ctest --test-dir build --output-on-failure "$@"
