#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# tests/docs/check_render.sh MAN: the rendered man page reads without a
# warning from man or groff (man --warnings passes -ww to groff) and has
# every section a reader looks for.
set -euo pipefail
fail() {
	echo "check_render: FAIL: $*" >&2
	exit 1
}
[[ $# -eq 1 && -s $1 ]] || fail "usage: check_render.sh kvmxdp.8 (missing or empty: $*)"
command -v man >/dev/null || fail "man not found (Debian package man-db: scripts/install-deps.sh)"
warnings=$(MANWIDTH=80 man --warnings -l "$1" 2>&1 >/dev/null)
[[ -z $warnings ]] || fail "man --warnings: $warnings"
text=$(MANWIDTH=80 man -l "$1" 2>/dev/null)
for s in NAME SYNOPSIS DESCRIPTION "GLOBAL OPTIONS" COMMANDS SIGNALS FILES "EXIT STATUS"; do
	grep -qx "$s" <<<"$text" || fail "no section $s in the rendered page"
done
echo "check_render: ok: $(wc -l <<<"$text") lines at 80 columns, no warning"
