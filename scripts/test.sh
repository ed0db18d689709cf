#!/usr/bin/env bash
# Sets everything up (Debian packages, build) and runs the whole test suite:
# unit tests (C++ and BPF programs) and the netns integration tests (vm-tests/).
#   sudo scripts/test.sh [ctest args...]     e.g. -L unit, -L vm, -R masquerade
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)"
ctest --test-dir build --output-on-failure "$@"
