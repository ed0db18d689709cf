#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# scripts/demo.sh: kvmxdp in action, in a throw-away topology of network
# namespaces (nothing outside them is touched; everything is removed on exit,
# Ctrl-C included):
#
#   guest1 ns (192.168.122.11/24, gw .1) --+
#   guest2 ns (192.168.122.12/24, gw .1) --+ bridge (192.168.122.1/24)   "host" ns, kvmxdp here
#                                            uplink 10.77.0.2/24, default via 10.77.0.1
#   lan ns:    router 10.77.0.1/24 <-> 10.78.0.1/24
#   server ns: 10.78.0.2/24 (no route back to 192.168.122.0/24: only NAT can work)
#
# Usage:
#   scripts/demo.sh                          the namespace demo (root)
#   scripts/demo.sh --bridge BR --uplink IF [attach options...]
#                                            no topology: run `kvmxdp attach` on these real
#                                            interfaces in the foreground (Ctrl-C stops the
#                                            daemon; `kvmxdp detach --bridge BR` removes it)
# The binary: $KVMXDP, default build/kvmxdp of this checkout.
set -Eeuo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
KVMXDP=${KVMXDP:-$ROOT/build/kvmxdp}

if [[ ${1:-} == -h || ${1:-} == --help ]]; then
	sed -n '3,20p' "$0" | sed 's/^# \{0,1\}//'
	exit 0
fi

if [[ $# -gt 0 ]]; then
	br="" up=""
	args=("$@")
	for ((i = 0; i < $#; i++)); do
		case ${args[i]} in
		--bridge) br=${args[i + 1]:-} ;;
		--uplink) up=${args[i + 1]:-} ;;
		esac
	done
	if [[ -z $br || -z $up ]]; then
		echo "demo.sh: error: give both --bridge BR and --uplink IF (or no arguments for the namespace demo)" >&2
		exit 2
	fi
	[[ -x $KVMXDP ]] || { echo "demo.sh: error: no kvmxdp binary at '$KVMXDP' (set KVMXDP)" >&2; exit 1; }
	echo "demo.sh: running '$KVMXDP attach $*' in the foreground; Ctrl-C stops the daemon" >&2
	echo "demo.sh: the datapath stays attached; remove it with: $KVMXDP detach --bridge $br" >&2
	exec "$KVMXDP" attach "$@"
fi

KVX_TEST=demo
# shellcheck source=../vm-tests/lib.sh
source "$ROOT/vm-tests/lib.sh"
[[ -x $KVMXDP ]] || { echo "demo.sh: error: no kvmxdp binary at '$KVMXDP' (build it, or set KVMXDP)" >&2; exit 1; }
kvx_init "$KVMXDP"

if [[ -t 1 ]]; then B=$'\033[1m' N=$'\033[0m'; else B="" N=""; fi
say() { printf '\n%s%s%s\n' "$B" "$*" "$N"; }
# showas LABEL CMD...: print "$ LABEL", run CMD, indent its output.
showas() { local label=$1; shift; printf '  $ %s\n' "$label"; "$@" 2>&1 | sed 's/^/    /'; }

say "1. Building the topology (namespaces kvx-$KVX_ID-*)"
kvx_topology_up
kvx_http_server
printf 'hello from the server, %s\n' "$(date)" >"$KVX_TMP/www/hello.txt"
kvx_random_file big 16 >/dev/null
echo "  guests: $G1_IP, $G2_IP on bridge $BR; uplink $UP $UP_IP; server $SRV_IP"

say "2. Without kvmxdp the guests cannot reach the server (it has no route back)"
if kvx_ping "$NS_G1" "$SRV_IP" 2; then
	echo "demo.sh: error: guest1 reached $SRV_IP before kvmxdp was attached" >&2
	exit 1
fi
echo "  guest1 -> $SRV_IP: no reply, as expected"

say "3. kvmxdp attach --bridge $BR --uplink $UP"
kvx_attach_bg || { echo "attach failed:"; cat "$KVX_DAEMON_LOG"; exit 1; }
sed 's/^/    /' "$KVX_DAEMON_LOG"

say "4. The guests reach the server through kvmxdp"
showas "ping -c 3 $SRV_IP      (in guest1)" nsx "$NS_G1" ping -n -c 3 -i 0.2 "$SRV_IP"
showas "curl http://$SRV_IP:8080/hello.txt      (in guest2)" nsx "$NS_G2" curl -sS "http://$SRV_IP:8080/hello.txt"
printf '  $ curl -o /dev/null http://%s:8080/big   (16 MB, from guest1)\n' "$SRV_IP"
nsx "$NS_G1" curl -sS -o /dev/null -w '    %{size_download} bytes at %{speed_download} bytes/s\n' \
	"http://$SRV_IP:8080/big"

say "5. The server sees only the uplink address ($UP_IP), never 192.168.122.x"
grep '"GET ' "$KVX_TMP/http.log" | sed 's/^/    server log: /'

say "6. kvmxdp status"
showas "kvmxdp status" kvx status

say "7. kvmxdp detach --bridge $BR"
showas "kvmxdp detach --bridge $BR" kvx detach --bridge "$BR"
if kvx_ping "$NS_G1" "$SRV_IP" 2; then
	echo "demo.sh: error: guest1 still reaches $SRV_IP after detach" >&2
	exit 1
fi
echo "  guest1 -> $SRV_IP: no reply again; nothing of kvmxdp is left"

say "8. Cleaning up (namespaces, bpffs, temp files)"
exit 0
