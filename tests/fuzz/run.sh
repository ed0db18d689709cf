#!/bin/bash
# ctest's fuzz_datapath: a bounded run of the harness from a copy of the
# committed corpus (the run never edits the source tree), with the reach
# check on (KVX_FUZZ_REACH=1, fuzz_datapath.cpp check_reach).
# libFuzzer's progress lines (thousands of them) go to a file and only its
# tail is printed: that is where a violation, the reach check's verdict and
# the saved input are, and a log cut to its head (as CI shows a long one)
# would hide them.
#   run.sh FUZZER CORPUS [SECONDS]
set -u
fuzzer=$1 corpus=$2 secs=${3:-60}
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
mkdir "$d/corpus"
cp "$corpus"/* "$d/corpus/"
if KVX_FUZZ_REACH=1 "$fuzzer" -max_total_time="$secs" -timeout=10 -print_final_stats=1 \
	-artifact_prefix="$d/" "$d/corpus" 2>"$d/log"; then
	tail -n 95 "$d/log"
	exit 0
else
	rc=$?
fi
tail -n 170 "$d/log"
for a in "$d"/crash-* "$d"/timeout-* "$d"/leak-* "$d"/oom-*; do
	[ -e "$a" ] || continue
	echo "fuzz input $(basename "$a") (hex): $(od -An -tx1 -v "$a" | tr -d ' \n')"
done
exit "$rc"
