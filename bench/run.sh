#!/usr/bin/env bash
# bench/run.sh: builds the benchmark tools and runs the kvmxdp benchmark.
# Usage: sudo bench/run.sh [--quick] [--reps N] [--workloads udp,tcp_up,...]
#                          [--configs iptables,kvmxdp-tc,...] [--no-guest] [...]
# All options but --no-guest are kvxbench.py's (bench/run.sh --help); see
# bench/README.md.  Then the real-guest row (bench/guest.sh: a QEMU guest,
# iptables vs kvmxdp) unless --no-guest.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
build=${KVX_BENCH_BUILD:-$repo/build-bench}

if [[ $(id -u) -ne 0 ]]; then
	echo "bench/run.sh: error: must run as root (namespaces, BPF); try sudo" >&2
	exit 1
fi

# The tools (built by hand here so the bench needs no configured CMake tree;
# bench/CMakeLists.txt builds the same targets in the main build).
mkdir -p "$build"
bpfcc=("$repo/cmake/bpf-cc") # the project's one set of BPF compiler flags
ccflags=(-O2 -g -Wall -Wextra -Werror)
newer() { [[ ! -e $1 ]] || [[ -n $(find "${@:2}" -newer "$1" 2>/dev/null) ]]; }
if newer "$build/kvx-gen" "$here/gen/kvx_gen.c" "$here/gen/kvx_gen.bpf.c"; then
	"${bpfcc[@]}" -c "$here/gen/kvx_gen.bpf.c" -o "$build/kvx_gen.bpf.o"
	bpftool gen skeleton "$build/kvx_gen.bpf.o" name kvx_gen_bpf >"$build/kvx_gen_bpf.skel.h"
	cc "${ccflags[@]}" -I"$build" "$here/gen/kvx_gen.c" -o "$build/kvx-gen" -lbpf -lelf -lz
fi
if newer "$build/kvx-net" "$here/gen/kvx_net.c"; then
	cc "${ccflags[@]}" "$here/gen/kvx_net.c" -o "$build/kvx-net"
fi
if newer "$build/kvx-ctfill" "$here/gen/kvx_ctfill.c" "$repo/bpf/include/kvmxdp/abi.h"; then
	cc "${ccflags[@]}" -I"$repo/bpf/include" "$here/gen/kvx_ctfill.c" -o "$build/kvx-ctfill" -lbpf
fi

guest=1
args=()
for a in "$@"; do
	if [[ $a == --no-guest ]]; then guest=0; else args+=("$a"); fi
	[[ $a == -h || $a == --help ]] && guest=0
done
# Debian's interpreter (python3-matplotlib for the chart is a Debian package).
/usr/bin/python3 "$here/kvxbench.py" --tools "$build" \
	--command "bench/run.sh${*:+ $*}" "${args[@]}"
if ((guest)); then
	# --kvmxdp PATH for the guest row too, else the README's build.
	kvmxdp="$repo/build/kvmxdp"
	for ((i = 1; i <= $#; i++)); do
		[[ ${!i} == --kvmxdp ]] && j=$((i + 1)) && kvmxdp=${!j}
	done
	[[ -x $kvmxdp ]] || kvmxdp=""
	if [[ -z $kvmxdp ]]; then
		echo "bench/run.sh: no kvmxdp binary for the real-guest row (build first)" >&2
	else
		bash "$here/guest.sh" "$kvmxdp"
	fi
fi
