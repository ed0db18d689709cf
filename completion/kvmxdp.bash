# bash completion for kvmxdp(8)                         -*- shell-script -*-
# SPDX-License-Identifier: GPL-2.0
#
# Installed as /usr/share/bash-completion/completions/kvmxdp (bash-completion
# loads it on the first <Tab> after "kvmxdp").  Commands and options are read
# from the binary's own --help (the CLI11 table is their one source, so this
# file never lists them and cannot fall behind); values are completed from
# the system: bridges from /sys/class/net/*/bridge, uplinks from the other
# interfaces (`--bridge` of every command, doctor's too), `map del`
# arguments from `kvmxdp map list --json`.  Needs
# nothing but bash (python3 for `map del`, as the libvirt hook does).

# _kvmxdp_help_read KVMXDP WORDS...: the --help of the command WORDS, as lines
# "o NAME ARG" (ARG 1: takes a value), "s NAME" (subcommand), "p NAME"
# (positional).  CLI11 puts one space between an option and its value's type
# ("--bpffs TEXT=/sys/fs/bpf") and at least two before the description.
# Kept per shell (a <Tab> runs it for every command level), keyed by the
# binary's identity so that a rebuilt or upgraded kvmxdp is read anew.
declare -gA _kvmxdp_help_cache=()
# _kvmxdp_help KVMXDP WORDS...: sets _kvmxdp_h (a variable, not output: the
# cache must be filled in this shell, not in a command substitution's).
_kvmxdp_help()
{
	local key
	key="$(stat -L -c %d:%i:%Y -- "$(type -P -- "$1" || echo "$1")" 2>/dev/null) $*"
	if [[ -z ${_kvmxdp_help_cache[$key]+set} ]]; then
		_kvmxdp_help_cache[$key]=$(_kvmxdp_help_read "$@")
	fi
	_kvmxdp_h=${_kvmxdp_help_cache[$key]}
}

_kvmxdp_help_read()
{
	local exe=$1 section=""
	shift
	"$exe" "$@" --help 2>/dev/null | while IFS= read -r line; do
		case $line in
		Options:) section=o ;;
		Subcommands:) section=s ;;
		Positionals:) section=p ;;
		"  "[!\ ]*)
			local rest=${line#  } name
			name=${rest%% *}
			rest=${rest#"$name"}
			case $section in
			o)
				local arg=0 n
				[[ $rest == " "[!\ ]* ]] && arg=1
				for n in ${name//,/ }; do
					echo "o $n $arg"
				done
				;;
			s | p) echo "$section $name" ;;
			esac
			;;
		esac
	done
}

_kvmxdp_bridges()
{
	local d
	for d in /sys/class/net/*/bridge; do
		[[ -d $d ]] || continue
		d=${d%/bridge}
		echo "${d##*/}"
	done
}

# Uplinks: every interface that is not a bridge, a bridge port's tap
# (brport: a guest's vnetN) or the loopback.
_kvmxdp_uplinks()
{
	local d
	for d in /sys/class/net/*; do
		[[ -e $d && ! -d $d/bridge && ! -d $d/brport && ${d##*/} != lo ]] || continue
		echo "${d##*/}"
	done
}

# `map del`: the EXT (word 1) or GUEST (word 2, of the mapping whose EXT is
# $2) of the recorded mappings.
_kvmxdp_mappings()
{
	command -v python3 >/dev/null 2>&1 || return 0
	"${@:3}" map list --json 2>/dev/null | python3 -I -c '
import json, sys
which, ext = sys.argv[1], sys.argv[2]
try:
    for m in json.load(sys.stdin).get("mappings", []):
        if which == "1":
            print(m["ext"])
        elif m["ext"] == ext:
            print(m["guest"])
except Exception:
    pass
' "$1" "$2"
}

_kvmxdp()
{
	local cur=${COMP_WORDS[COMP_CWORD]} prev=""
	((COMP_CWORD > 0)) && prev=${COMP_WORDS[COMP_CWORD - 1]}
	local exe=${COMP_WORDS[0]}
	# A command in the current directory or with a '~' is run as typed.
	exe=${exe/#\~/$HOME}
	COMPREPLY=()

	# Walk the words before the cursor: the command path, the values of
	# options that take one (global ones matter for `map list`), and the
	# positionals given so far.
	local -a path=() globals=() pos=()
	local help i w kind name arg takes _kvmxdp_h
	_kvmxdp_help "$exe"
	help=$_kvmxdp_h
	for ((i = 1; i < COMP_CWORD; i++)); do
		w=${COMP_WORDS[i]}
		if [[ $w == -* ]]; then
			takes=0
			while read -r kind name arg; do
				[[ $kind == o && $name == "${w%%=*}" ]] && takes=$arg
			done <<<"$help"
			if ((takes)) && [[ $w != *=* ]]; then
				((${#path[@]} == 0)) && globals+=("$w" "${COMP_WORDS[i + 1]}")
				((i++))
			fi
			continue
		fi
		if grep -qx "s $w" <<<"$help"; then
			path+=("$w")
			_kvmxdp_help "$exe" "${path[@]}"
			help=$_kvmxdp_h
		else
			pos+=("$w")
		fi
	done

	local cmd="${path[*]}"
	case $prev in
	--bridge)
		mapfile -t COMPREPLY < <(compgen -W "$(_kvmxdp_bridges)" -- "$cur")
		return
		;;
	--uplink)
		mapfile -t COMPREPLY < <(compgen -W "auto $(_kvmxdp_uplinks)" -- "$cur")
		return
		;;
	--mode)
		mapfile -t COMPREPLY < <(compgen -W "auto tc xdp" -- "$cur")
		return
		;;
	--ipv6)
		mapfile -t COMPREPLY < <(compgen -W "auto nat66 relay off" -- "$cur")
		return
		;;
	--ipv6-inbound)
		mapfile -t COMPREPLY < <(compgen -W "stateful open" -- "$cur")
		return
		;;
	--proto)
		if [[ $cmd == conntrack* ]]; then
			mapfile -t COMPREPLY < <(compgen -W "tcp udp icmp icmpv6" -- "$cur")
		else
			mapfile -t COMPREPLY < <(compgen -W "tcp udp" -- "$cur")
		fi
		return
		;;
	--state)
		mapfile -t COMPREPLY < <(compgen -W "SYN_SENT ESTABLISHED FIN_WAIT TIME_WAIT CLOSE STATELESS" -- "$cur")
		return
		;;
	--subnet6)
		# A prefix is typed; "none" forgets the recorded one.
		mapfile -t COMPREPLY < <(compgen -W none -- "$cur")
		return
		;;
	--dhcp-leases)
		mapfile -t COMPREPLY < <(compgen -W none -- "$cur"; compgen -f -- "$cur")
		return
		;;
	--metrics)
		# ADDR:PORT is the user's to choose; off drops a recorded one.
		mapfile -t COMPREPLY < <(compgen -W "off 127.0.0.1:" -- "$cur")
		return
		;;
	--config)
		mapfile -t COMPREPLY < <(compgen -f -- "$cur")
		return
		;;
	--bpffs | --run-dir | --root | --unit-dir | --hook-dir | --qemu-hook-dir | --prefix)
		mapfile -t COMPREPLY < <(compgen -d -- "$cur")
		return
		;;
	esac
	# Any other option that takes a value: nothing to offer.
	if [[ $prev == -* ]] && grep -q "^o $prev 1$" <<<"$help"; then
		return
	fi

	if [[ $cur == -* ]]; then
		mapfile -t COMPREPLY < <(compgen -W "$(sed -n 's/^o \(--[^ ]*\) .*/\1/p' <<<"$help")" -- "$cur")
		return
	fi
	# libvirt-hook DRIVER: libvirt runs it; completed for a hand run.
	if [[ $cmd == libvirt-hook ]] && ((${#pos[@]} == 0)); then
		mapfile -t COMPREPLY < <(compgen -W "qemu network" -- "$cur")
		return
	fi
	# map allow: its two words; an entry is the administrator's to type.
	if [[ $cmd == "map allow" ]] && ((${#pos[@]} == 0)); then
		mapfile -t COMPREPLY < <(compgen -W "default none uplink:" -- "$cur")
		return
	fi
	if [[ $cmd == "map del" ]] && ((${#pos[@]} < 2)); then
		mapfile -t COMPREPLY < <(compgen -W "$(_kvmxdp_mappings $((${#pos[@]} + 1)) "${pos[0]:-}" "$exe" "${globals[@]}")" -- "$cur")
		return
	fi
	mapfile -t COMPREPLY < <(compgen -W "$(sed -n 's/^s //p' <<<"$help")" -- "$cur")
}

complete -F _kvmxdp kvmxdp
