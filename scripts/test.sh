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
rc=0
ctest --test-dir build --output-on-failure "$@" || rc=$?
if ((rc)); then
	# The failed checks once more, at the end (up to 12 per test): a CI log
	# that keeps only its head and tail would else cut the middle, where
	# ctest printed them.
	echo "---- failed checks ----"
	awk '/^\[[a-z0-9_]+\] FAIL: / && n[$1]++ < 12 || /^\[[a-z0-9_]+\] RESULT: FAILED/ ||
	     /^\[  FAILED  \] [A-Za-z]/ && g++ < 30' build/Testing/Temporary/LastTest.log || true
fi
exit "$rc"
