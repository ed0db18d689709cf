#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# tests/completion/check_zsh_completion.sh KVMXDP COMPLETION: the zsh
# completion (completion/_kvmxdp) driven by a real interactive zsh: the file
# sits in a directory of $fpath as the package installs it, compinit loads
# it by its #compdef line, and a line is typed with <Tab> on a pseudo
# terminal (zsh/zpty).  compadd is wrapped to print what the completion
# offers, so the check reads the candidates, not the screen.  Bridges and
# uplinks come from a network namespace of the test's own (two bridges, a
# veth pair, a bridge port that is no uplink); `map del` completes the
# mappings of a config the test writes.  Also: zsh parses the file, and
# every command and option of this build's --help is offered somewhere.
set -euo pipefail

fail() {
	echo "check_zsh_completion: FAIL: $*" >&2
	exit 1
}
[[ $# -ge 2 && -x $1 && -f $2 ]] || fail "usage: check_zsh_completion.sh KVMXDP_BINARY COMPLETION_FILE"
kvmxdp=$(readlink -f "$1")
completion=$(readlink -f "$2")
command -v zsh >/dev/null || fail "zsh not found (Debian package zsh: scripts/install-deps.sh)"

if [[ ${3:-} != --inside ]]; then
	if [[ $(id -u) -ne 0 ]]; then
		echo "check_zsh_completion: skip: needs root (a network namespace)"
		exit 77
	fi
	zsh -n "$completion" || fail "zsh does not parse $completion"
	tmp=$(mktemp -d)
	trap 'rm -rf --one-file-system "$tmp"' EXIT
	# The interfaces made here vanish with the namespace.
	unshare --net -- bash "$0" "$kvmxdp" "$completion" --inside "$tmp"
	exit
fi
tmp=$4
ip link add kvxzbr0 type bridge
ip link add kvxzbr1 type bridge
ip link add kvxzup0 type veth peer name kvxzup1
ip tuntap add dev kvxztap0 mode tap # a guest's vnetN
ip link set kvxztap0 master kvxzbr0

cat >"$tmp/k.json" <<'JSON'
{"version": 1, "instances": [{"bridge": "kvxzbr0", "uplink": "kvxzup0", "subnet": "192.168.122.0/24",
 "nat_port_lo": 61000, "nat_port_hi": 65535, "eif": false, "ct_size": 65536, "bind_size": 65536,
 "bpffs": "/sys/fs/bpf", "pin_dir": "/sys/fs/bpf/kvmxdp/kvxzbr0",
 "clsact_created": {"bridge": false, "uplink": false}, "saved_sysctls": {}, "clamp_mss": 0,
 "mappings": [{"ext": "10.0.0.5", "guest": "192.168.122.11", "proto": "any", "add_address": false},
              {"ext": "uplink:2222", "guest": "192.168.122.14:22", "proto": "tcp", "add_address": false}]}]}
JSON
chmod 600 "$tmp/k.json"

# The package's layout: the file is _kvmxdp in a directory of $fpath, and
# the command is found as "kvmxdp" on $PATH.
mkdir -p "$tmp/functions" "$tmp/bin"
cp "$completion" "$tmp/functions/_kvmxdp"
ln -s "$kvmxdp" "$tmp/bin/kvmxdp"

# complete LINE...: one zsh per call (no state carried between cases); the
# candidates of LINE<Tab>, sorted, on one line.  compadd's own -O/-A/-D
# calls only fill arrays for the completion system; the others are what is
# offered.
cat >"$tmp/drive.zsh" <<'ZSH'
zmodload zsh/zpty
zpty z env -i HOME="$TMP" TERM=dumb PATH="$TMP/bin:/usr/sbin:/usr/bin:/sbin:/bin" zsh -f -i
zpty -w z "PROMPT= ; fpath=($TMP/functions \$fpath); autoload -Uz compinit; compinit -u -d $TMP/zcompdump"
zpty -w z 'compadd() { if [[ ${@[1,(i)(-|--)]} == *-(O|A|D)\ * ]]; then builtin compadd "$@"; return; fi; local -a __h; builtin compadd -A __h "$@"; print -rl -- "" ${__h/#/<HI${:-T}>}; builtin compadd "$@" }'
zpty -w z '_kvx_end() { print -r -- "<EN${:-D}>"; exit }; comppostfuncs=(_kvx_end)'
zpty -w z 'zstyle ":completion:*" list-prompt ""; zstyle ":completion:*" select-prompt ""; unsetopt BEEP'
zpty -n -w z "$1"$'\t'
out=
while zpty -r z line; do
	out+=$line
	[[ $line == *'<END>'* ]] && break
done
# KVX_DEBUG=1: the raw terminal output, for a failing case.
zpty -d z; [[ -n $KVX_DEBUG ]] && print -r -- "$out" | cat -v >&2
print -rl -- ${(f)out} | sed -n 's/^\(.*\)<HIT>\(.*\)\r*$/\2/p' | tr -d '\r' | sort -u | xargs
ZSH

n=0
# expect "EXPECTED WORDS" LINE: LINE is typed, then <Tab>.
expect() {
	local want=$1 got
	got=$(TMP=$tmp timeout 20 zsh -f "$tmp/drive.zsh" "$2") || fail "kvmxdp: zsh did not finish '$2<Tab>'"
	[[ $got == "$want" ]] || fail "'$2<Tab>': got '$got', want '$want'"
	n=$((n + 1))
}
expect "kvxzbr0 kvxzbr1" "kvmxdp attach --bridge "
expect "kvxzbr0 kvxzbr1" "kvmxdp status --bridge=kv"
# Uplinks: not a bridge, not a bridge port (kvxztap0), not lo.
expect "auto kvxzup0 kvxzup1" "kvmxdp attach --bridge kvxzbr0 --uplink "
expect "auto tc xdp" "kvmxdp --config $tmp/k.json attach --mode "
expect "conntrack" "kvmxdp con"
expect "add del list" "kvmxdp map "
expect "--eif" "kvmxdp --lock-wait 5 attach --e"
# A global option's value is not taken for the command.
expect "status" "kvmxdp --lock-wait 5 st"
expect "icmp tcp udp" "kvmxdp conntrack flush --proto "
expect "tcp udp" "kvmxdp map add --proto "
expect "ESTABLISHED" "kvmxdp conntrack list --state EST"
# map del: the recorded mappings (with the global --config), then the
# guest side of the chosen one.
expect "10.0.0.5 uplink:2222" "kvmxdp --config $tmp/k.json map del "
expect "192.168.122.14:22" "kvmxdp --config $tmp/k.json map del uplink:2222 "

# Every command and option of --help (at every level) is offered.
check_level() {
	local words=("$@") line name help cmds=() opts=()
	help=$("$kvmxdp" "${words[@]}" --help)
	local section=
	while IFS= read -r line; do
		case $line in
		Options:) section=o ;;
		Subcommands:) section=s ;;
		Positionals:) section=p ;;
		"  "[!\ ]*)
			name=${line#  }
			name=${name%% *}
			case $section in
			o) for name in ${name//,/ }; do [[ $name == --* ]] && opts+=("$name"); done ;;
			s) cmds+=("$name") ;;
			esac
			;;
		esac
	done <<<"$help"
	local prefix="kvmxdp ${words[*]}${words[*]:+ }" got
	got=" $(TMP=$tmp timeout 20 zsh -f "$tmp/drive.zsh" "$prefix--") "
	for name in "${opts[@]}"; do
		[[ $got == *" $name "* ]] || fail "'$prefix--<Tab>' does not offer $name (offers:$got)"
	done
	n=$((n + 1))
	((${#cmds[@]})) || return 0
	got=" $(TMP=$tmp timeout 20 zsh -f "$tmp/drive.zsh" "$prefix") "
	for name in "${cmds[@]}"; do
		[[ $got == *" $name "* ]] || fail "'$prefix<Tab>' does not offer $name (offers:$got)"
	done
	n=$((n + 1))
	for name in "${cmds[@]}"; do
		check_level "${words[@]}" "$name"
	done
}
check_level
echo "check_zsh_completion: ok: $n cases"
