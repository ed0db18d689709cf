#!/usr/bin/env bash
# bench/tcprof/run.sh: per-packet cost of kvmxdp's TC programs under
# BPF_PROG_TEST_RUN (see tcprof.cpp), next to the minimal static SNAT.
# Usage: sudo bench/tcprof/run.sh [--build DIR] [kvx-tcprof options] [OBJ...]
#   DIR: a configured, built tree (default build/); OBJ default: its kvmxdp_tc.bpf.o.
# Runs in a private network namespace of its own (unshare): nothing outside is touched.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
build=$repo/build
if [[ ${1:-} == --build ]]; then
	build=$(cd "$2" && pwd)
	shift 2
fi
if [[ $(id -u) -ne 0 ]]; then
	echo "bench/tcprof/run.sh: error: must run as root (BPF, namespaces)" >&2
	exit 1
fi
out=$build/tcprof
mkdir -p "$out"
"$repo/cmake/bpf-cc" -c "$here/tcprof.bpf.c" -o "$out/tcprof.bpf.o"
# The harness is the BPF tests' (tests/bpf): built by the project's own
# CMake target so its include paths and libraries cannot drift from theirs.
cmake --build "$build" --target kvx-tcprof >/dev/null
objs=()
for a in "$@"; do [[ $a == *.o ]] && objs+=("$a"); done
if ((${#objs[@]} == 0)); then
	set -- "$@" "$build/bpf/kvmxdp_tc/kvmxdp_tc.bpf.o"
fi
exec "$build/bench/kvx-tcprof" --harness "$out/tcprof.bpf.o" \
	--minimal "$repo/bench/minimal/snat_tc.bpf.c" --bpf-cc "$repo/cmake/bpf-cc" "$@"
