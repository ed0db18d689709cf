# Sourced by the scripts that need root (packages, namespaces, BPF): in a
# root shell they just go on; for a user they run themselves again through
# sudo (a fresh Debian 12 root shell has no sudo, a user's desktop has no
# root shell, and the README's commands are the same for both).  sudo resets
# the environment: the proxy settings apt needs and the project's own
# variables (KVMXDP, KVX_*) are passed on.  Files the run creates in the
# checkout (build/) belong to root afterwards.
# Usage: source "$(dirname "$0")/as-root.sh" "$0" "$@"
if [[ $(id -u) -ne 0 ]]; then
	if command -v sudo >/dev/null; then
		keep=http_proxy,https_proxy,no_proxy,HTTP_PROXY,HTTPS_PROXY,NO_PROXY,KVMXDP,BPF_CLANG
		# (no KVX_ variable: grep fails, and the caller runs under set -e)
		keep+=$(compgen -e | { grep '^KVX_' || true; } | sed 's/^/,/' | tr -d '\n')
		exec sudo --preserve-env="$keep" -- bash "$@"
	fi
	echo "$(basename "$1"): error: must run as root (a root shell, or a user with sudo)" >&2
	exit 1
fi
