#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/pins_hostile.sh: the pin path and the pins are not trusted by
# name.  The test's bpffs is mounted without mode= (1777, as a bpffs
# mounted by hand or by another tool is), so an unprivileged user (uid
# 65534) can create entries at its top.  Another tool's pins (root's, in
# <bpffs>/othertool/) are the decoy a planted link points at.
#  1. A user's <bpffs>/kvmxdp/ holding <bridge> -> ../othertool, made
#     before the first attach: attach refuses with one line naming
#     <bpffs>/kvmxdp, its owner and the fix (root removes it; a bpffs
#     mounted with mode=0700); nothing is pinned into the decoy, nothing
#     changes.
#  2. The same planted after a "reboot" (the instance still in the config):
#     detach, status and conntrack refuse with that line; the decoy's pins
#     are all there (detach used to unlink every entry of the directory the
#     link pointed at); the instance stays in the config until a detach can
#     finish, which it does once the user's directory is gone.
#  3. A root-owned kvmxdp/ whose <bridge> is a symbolic link, a pin
#     directory owned by another user, one writable by its group: detach,
#     attach and status refuse naming it; the decoy keeps its pins.
#  4. A kvx_ct of this build's layout owned by another user: attach does
#     not resume on it (one line naming the pin and its owner).
#     detach refuses such a pin directory before it signals anybody: the
#     daemon runs on.
#  5. Pins of another ABI after the daemon is gone (kvx_ct with 20-byte
#     keys, kvx_cfg of ABI version 3, kvx_cfg of 256 bytes): status,
#     status --json, map add, map del, conntrack list and conntrack flush
#     each print one `kvmxdp: error:` line naming the pin and the mismatch
#     and exit 1 (no crash: under the ASan build too), the config and the
#     planted map are untouched; `map list` reads no pin and still lists
#     the config's mapping.  With the real pins back, attach resumes and
#     guests reach the server through the NAT.
#
#   guest1 ns (kg1<id> 192.168.122.11/24, gw .1) --+
#   guest2 ns (kg2<id> 192.168.122.12/24, gw .1) --+  ping -> server
#                                    bridge kb<id> (192.168.122.1/24), host ns
#                                    uplink ku<id> 10.77.0.2/24 <- kvmxdp
#   lan ns:    router kl<id> 10.77.0.1/24, kr<id> 10.78.0.1/24
#   server ns: ks<id> 10.78.0.2/24
#   bpffs $KVX_TMP/bpffs (mode 1777): kvmxdp/, othertool/{map_a,map_b}
#
# Usage: pins_hostile.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
kvx_init "${1:-}"
kvx_require_tools setpriv stat
kvx_topology_up

USER_UID=65534
as_user() { setpriv --reuid="$USER_UID" --regid="$USER_UID" --clear-groups "$@"; }
# The user reaches the test's bpffs (its temp dir is root's 0700).
chmod 0711 "$KVX_TMP"
PD=$(kvx_pin_dir "$BR")
TOP=$BPFFS/kvmxdp
OTHER=$BPFFS/othertool

# Another tool's pins (root's, 0700): the decoy.
make_other() {
	mkdir -m 0700 "$OTHER"
	bpftool map create "$OTHER/map_a" type hash key 4 value 4 entries 8 name map_a
	bpftool map create "$OTHER/map_b" type hash key 4 value 4 entries 8 name map_b
}
other_pins() { (cd "$OTHER" && find . -mindepth 1 | sort | paste -sd' '); }
# What a user can do on a 1777 bpffs: a kvmxdp/ of their own, the
# bridge's name in it pointing at the decoy.
plant_user_dir() {
	as_user mkdir "$TOP"
	as_user ln -s ../othertool "$TOP/$BR"
	assert_eq "the user owns $TOP" "$USER_UID" "$(stat -c %u "$TOP")"
}
cfg_sum() { sha256sum <"$KVX_CFG" | cut -d' ' -f1; }
in_config() { grep -q "\"bridge\": \"$BR\"" "$KVX_CFG"; }

# run_kvx ARGS...: OUT (stdout and stderr) and RC of one kvmxdp command.
# An attach that is not refused runs as the daemon: the timeout ends it
# (RC 124).
run_kvx() {
	RC=0
	OUT=$(timeout 20 ip netns exec "$NS_HOST" "$KVMXDP" "${KVX_OPTS[@]}" "$@" 2>&1) || RC=$?
}
# assert_refused DESC NEEDLE ARGS...: exit 1 with exactly one line,
# "kvmxdp: error: ..." containing NEEDLE (no sanitizer report, no crash).
assert_refused() {
	local desc=$1 needle=$2
	shift 2
	run_kvx "$@"
	kvx_log "$1: $(printf '%s' "$OUT" | head -c 600)"
	assert_eq "$desc: exit 1" 1 "$RC"
	assert_eq "$desc: one line" 1 "$(printf '%s\n' "$OUT" | wc -l)"
	assert_eq "$desc: it is the error line" "kvmxdp: error: " "${OUT:0:15}"
	assert_contains "$desc: names what is wrong" "$needle" "$OUT"
}

must assert_eq "the test's bpffs is mounted without mode= (1777)" 1777 "$(stat -c %a "$BPFFS")"
make_other

kvx_step "1. a user's kvmxdp/ before the first attach: attach refuses"
plant_user_dir
STATE=$(kvx_host_state)
assert_refused "attach under the user's kvmxdp/" \
	"$TOP: owned by uid $USER_UID, not root" attach --bridge "$BR" --uplink "$UP"
assert_contains "attach says who may write where, and the fix" \
	"another user made it in $BPFFS (mode 1777, open to every user); kvmxdp neither uses it nor deletes through it: as root, remove it (rm -r $TOP) and mount the bpffs with mode=0700, or give kvmxdp a bpffs of its own (--bpffs)" \
	"$OUT"
assert_eq "the user's kvmxdp/ is left as it is" "$USER_UID" "$(stat -c %u "$TOP")"
assert_eq "nothing pinned into the decoy" "./map_a ./map_b" "$(other_pins)"
assert_eq "attach changed nothing (filters, sysctls, bpffs)" "$STATE" "$(kvx_host_state)"
assert_eq "no instance recorded" "" "$(cat "$KVX_CFG" 2>/dev/null | grep "\"bridge\": \"$BR\"" || true)"

kvx_step "2. planted after a reboot, the instance in the config: detach refuses, the decoy stays"
rm "$TOP/$BR"
rmdir "$TOP"
kvx_attach_bg || kvx_fatal "cannot attach on a clean bpffs"
assert_eq "kvmxdp made $TOP root's, 0700" "0 700" "$(stat -c '%u %a' "$TOP")"
assert_eq "and $PD" "0 700" "$(stat -c '%u %a' "$PD")"
assert_ok "guest1 reaches the server" kvx_ping "$NS_G1" "$SRV_IP" 3
kvx_reboot_datapath # SIGKILL, a fresh bpffs (1777 again), the filters gone
make_other
plant_user_dir
assert_refused "detach under the user's kvmxdp/" \
	"$TOP: owned by uid $USER_UID, not root" detach --bridge "$BR"
assert_eq "detach unlinked nothing of the decoy" "./map_a ./map_b" "$(other_pins)"
assert_ok "the instance stays in the config (detach can be repeated)" in_config
assert_refused "status" "$TOP: owned by uid $USER_UID, not root" status --bridge "$BR"
assert_refused "conntrack list" "$TOP: owned by uid $USER_UID, not root" \
	conntrack list --bridge "$BR"
rm "$TOP/$BR"
rmdir "$TOP"
assert_ok "detach completes once the user's directory is gone" kvx detach --bridge "$BR"
assert_eq "the decoy still has its pins" "./map_a ./map_b" "$(other_pins)"

kvx_step "3. root's kvmxdp/ with <bridge> a symbolic link, another owner, a group-writable mode"
kvx_attach_bg || kvx_fatal "cannot attach"
kvx_daemon_kill
mv "$PD" "$TOP/saved"
ln -s ../othertool "$PD"
assert_refused "detach" "$PD: a symbolic link" detach --bridge "$BR"
assert_eq "the decoy keeps its pins" "./map_a ./map_b" "$(other_pins)"
assert_refused "attach" "$PD: a symbolic link" attach --bridge "$BR" --uplink "$UP"
assert_eq "nothing pinned into the decoy" "./map_a ./map_b" "$(other_pins)"
assert_refused "status" "$PD: a symbolic link" status --bridge "$BR"
rm "$PD"
mv "$TOP/saved" "$PD"
chown "$USER_UID" "$PD"
assert_refused "status, pin directory of another user" \
	"$PD: owned by uid $USER_UID, not root" status --bridge "$BR"
assert_refused "attach, pin directory of another user" \
	"$PD: owned by uid $USER_UID, not root" attach --bridge "$BR" --uplink "$UP"
chown 0 "$PD"
chmod 0770 "$PD"
assert_refused "status, group-writable pin directory" \
	"$PD: writable by group or others (mode 0770)" status --bridge "$BR"
chmod 0700 "$PD"
run_kvx status --bridge "$BR"
assert_eq "status reads the instance again" 0 "$RC"

kvx_step "4. a kvx_ct of this layout owned by another user: attach does not resume on it"
rm "$PD/kvx_ct"
bpftool map create "$PD/kvx_ct" type hash key 16 value 40 entries 64 name kvx_ct
chown "$USER_UID" "$PD/kvx_ct"
assert_refused "attach" "$PD/kvx_ct: owned by uid $USER_UID, not root" \
	attach --bridge "$BR" --uplink "$UP"
assert_refused "conntrack list" "$PD/kvx_ct: owned by uid $USER_UID, not root" \
	conntrack list --bridge "$BR"
assert_ok "detach (the pin directory is root's)" kvx detach --bridge "$BR"
assert_eq "no pin left" "" "$(kvx_pins)"

kvx_step "5. pins of another ABI, the daemon gone: every reader refuses with one line"
kvx_attach_bg || kvx_fatal "cannot attach"
assert_ok "map add uplink:8080 -> guest2:80" kvx map add uplink:8080 "$G2_IP:80" --proto tcp
# detach checks the pin directory before it signals anyone: refused, the
# daemon runs on.
chmod 0770 "$PD"
assert_refused "detach, group-writable pin directory, the daemon running" \
	"$PD: writable by group or others (mode 0770)" detach --bridge "$BR"
assert_ok "the daemon was not stopped by the refused detach" kill -0 "$KVX_DAEMON_PID"
assert_ok "the instance stays in the config" in_config
chmod 0700 "$PD"
kvx_daemon_stop
SAVED=$BPFFS/saved
mkdir -m 0700 "$SAVED"
# A map replaces the real one under its pin name for one case; the real
# pins wait in $SAVED.
swap_in() { # NAME bpftool-map-create-args...
	local name=$1
	shift
	mv "$PD/$name" "$SAVED/$name"
	bpftool map create "$PD/$name" "$@" name "$name"
}
swap_back() { # NAME
	rm "$PD/$1"
	mv "$SAVED/$1" "$PD/$1"
}
zeros() { printf '0 %.0s' $(seq "$1"); }
readers_refuse() { # CASE NEEDLE
	local c=$1 needle=$2 sum
	sum=$(cfg_sum)
	assert_refused "$c: status" "$needle" status --bridge "$BR"
	assert_refused "$c: status --json" "$needle" status --json --bridge "$BR"
	assert_refused "$c: map add" "$needle" map add uplink:8081 "$G2_IP:81" --proto tcp
	assert_refused "$c: map del" "$needle" map del uplink:8080 "$G2_IP:80" --proto tcp
	assert_refused "$c: conntrack list" "$needle" conntrack list --bridge "$BR"
	assert_refused "$c: conntrack flush" "$needle" conntrack flush --bridge "$BR"
	assert_eq "$c: the config is unchanged" "$sum" "$(cfg_sum)"
	run_kvx map list --bridge "$BR"
	assert_eq "$c: map list reads no pin: exit 0" 0 "$RC"
	assert_contains "$c: map list shows the config's mapping" "uplink:8080" "$OUT"
}
# This build's layouts, read off its own pins (the ABI header is the one
# source; the planted maps differ from them in one thing each).
pin_size() { # NAME key|value
	bpftool -j map show pinned "$PD/$1" | "$KVX_PY" -c "import json,sys; print(json.load(sys.stdin)['bytes_$2'])"
}
ABI=$(sed -n 's/^#define KVX_ABI_VERSION \([0-9]*\)$/\1/p' "$(dirname "$0")/../bpf/include/kvmxdp/abi.h")
SINCE=$(sed -n 's/^#define KVX_ABI_TABLES_SINCE \([0-9]*\)$/\1/p' "$(dirname "$0")/../bpf/include/kvmxdp/abi.h")
CT_KEY=$(pin_size kvx_ct key)
CT_VAL=$(pin_size kvx_ct value)
CFG_VAL=$(pin_size kvx_cfg value)
[[ -n $ABI && -n $SINCE && -n $CT_KEY && -n $CT_VAL && -n $CFG_VAL ]] || kvx_fatal "cannot read this build's layouts"
# kvx_ct with keys 4 bytes longer than this ABI's, one entry.
swap_in kvx_ct type hash key $((CT_KEY + 4)) value "$CT_VAL" entries 64
bpftool map update pinned "$PD/kvx_ct" key $(zeros $((CT_KEY + 3))) 1 value $(zeros "$CT_VAL")
readers_refuse "kvx_ct with longer keys" \
	"$PD/kvx_ct: key size $((CT_KEY + 4)), this kvmxdp expects $CT_KEY (ABI $ABI)"
assert_eq "flush left the planted map alone" 1 \
	"$(bpftool -j map dump pinned "$PD/kvx_ct" | "$KVX_PY" -c 'import json,sys; print(len(json.load(sys.stdin)))')"
swap_back kvx_ct
# kvx_cfg of this size but the next ABI version.
swap_in kvx_cfg type array key 4 value "$CFG_VAL" entries 1
bpftool map update pinned "$PD/kvx_cfg" key 0 0 0 0 value $((ABI + 1)) $(zeros $((CFG_VAL - 1)))
readers_refuse "kvx_cfg of ABI version $((ABI + 1))" \
	"$PD/kvx_cfg: ABI version $((ABI + 1)), this kvmxdp uses $ABI (tables of $SINCE..$ABI)"
swap_back kvx_cfg
# kvx_cfg of 256 bytes: read into this build's struct, it would overwrite
# the stack.
swap_in kvx_cfg type array key 4 value 256 entries 1
bpftool map update pinned "$PD/kvx_cfg" key 0 0 0 0 value "$ABI" $(zeros 255)
readers_refuse "kvx_cfg of 256 bytes" "$PD/kvx_cfg: value size 256, this kvmxdp expects $CFG_VAL (ABI $ABI)"
swap_back kvx_cfg
rmdir "$SAVED"

run_kvx status --json --bridge "$BR"
assert_eq "the real pins back: status works" 0 "$RC"
kvx_attach_bg || kvx_fatal "cannot resume over the real pins"
assert_ok "guest2 reaches the server after the resume" kvx_ping "$NS_G2" "$SRV_IP" 3
assert_eq "the mapping survived every refusal" 1 \
	"$(kvx_json 'len(i["mappings"])')"
kvx_daemon_stop
assert_ok "detach" kvx detach --bridge "$BR"
assert_eq "no pin left" "" "$(kvx_pins)"
assert_eq "$TOP stays, root's and empty: no user can squat the name on this 1777 bpffs" \
	"0 700 0" "$(stat -c '%u %a' "$TOP") $(find "$TOP" -mindepth 1 | wc -l)"
assert_eq "the decoy still has its pins" "./map_a ./map_b" "$(other_pins)"

kvx_finish
