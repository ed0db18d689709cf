// SPDX-License-Identifier: GPL-2.0
// `kvmxdp install`: the systemd unit kvmxdp@.service (instance = bridge) and
// the libvirt network hook.  The texts live here only; `cmake --install`
// runs this same verb, so both install paths write identical files.
#include "verbs/install.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <climits>

#include "base/error.hpp"
#include "base/fs.hpp"
#include "base/text.hpp"

namespace kvmxdp {

namespace {

// Single-quoted for sh: the path may contain anything but a NUL.
std::string shq(const std::string &s)
{
	std::string o = "'";
	for (char c : s)
		o += c == '\'' ? std::string("'\\''") : std::string(1, c);
	return o + "'";
}

// One argument of an ExecStart= line: systemd expands '%' specifiers and
// '$' variables and splits on blanks unless double-quoted.
std::string sdq(const std::string &s)
{
	std::string body;
	bool quote = s.empty();
	for (char c : s) {
		if (c == '%' || c == '$')
			body += c; // doubled: a literal
		if (c == '"' || c == '\\')
			body += '\\';
		if (c == ' ' || c == '\t' || c == '"' || c == '\'' || c == '\\')
			quote = true;
		body += c;
	}
	return quote ? "\"" + body + "\"" : body;
}

// A path install writes into the unit or the hook.  Refused: what would
// end the line it is on (a newline: the rest becomes a directive of its
// own), a '%' (a systemd specifier in some directives and escaped
// differently in each), control characters and bytes that are not UTF-8
// (systemd ignores such an assignment), and a relative path (the unit runs
// in '/').  Blanks, quotes, '$' and '\' are quoted by sdq() and shq().
void check_unit_path(const std::string &what, const std::string &path)
{
	std::string why;
	if (path.empty() || path[0] != '/')
		why = "not an absolute path";
	else if (!is_utf8(path))
		why = "not UTF-8";
	else if (!is_printable_text(path))
		why = "a control character (newline, tab, ...)";
	else if (path.find('%') != std::string::npos)
		why = "'%' (a systemd specifier)";
	if (!why.empty())
		throw Error("install: " + what + " '" + printable(path) +
			    "' cannot go into the unit: " + why);
}

std::string self_exe()
{
	char buf[PATH_MAX];
	ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
	if (n <= 0)
		throw_errno("readlink", "/proc/self/exe");
	return std::string(buf, static_cast<size_t>(n));
}

} // namespace

std::string unit_text(const std::string &exe, const std::string &config, const std::string &bpffs,
		      const std::string &run_dir)
{
	std::string globals = " --config " + sdq(config);
	if (!bpffs.empty())
		globals += " --bpffs " + sdq(bpffs);
	if (!run_dir.empty())
		globals += " --run-dir " + sdq(run_dir);
	// %i, not %I: the instance is the bridge name verbatim ('-' stays '-').
	return "# kvmxdp@BRIDGE.service: the kvmxdp datapath and daemon of one bridge.\n"
	       "# Written by `kvmxdp install`.  Enable with\n"
	       "#   systemctl enable --now kvmxdp@virbr0\n"
	       "# The bridge's uplink, subnet and mappings come from " +
	       config +
	       "\n"
	       "# (recorded by the first `kvmxdp attach --bridge BR --uplink IF`).\n"
	       "# Stopping the service stops the daemon only: the datapath stays\n"
	       "# attached; `kvmxdp detach --bridge BR` removes it.\n"
	       "[Unit]\n"
	       "Description=kvmxdp eBPF NAT for the KVM guests on bridge %i\n"
	       "After=network.target libvirtd.service\n"
	       "Wants=network.target\n"
	       "\n"
	       "[Service]\n"
	       "Type=simple\n"
	       "ExecStart=" +
	       sdq(exe) + globals +
	       " attach --bridge %i\n"
	       // The bridge may not exist yet (libvirt starts the network
	       // later; its hook starts us again then).
	       "Restart=on-failure\n"
	       "RestartSec=5\n"
	       "\n"
	       "[Install]\n"
	       "WantedBy=multi-user.target\n";
}

std::string hook_text(const std::string &config)
{
	// libvirt runs network hooks as `network NAME OPERATION SUBOP -` with
	// the network XML on stdin.  A hook must not call back into libvirt
	// (libvirt.org/hooks.html: deadlock): the bridge name comes from the
	// XML, and the service is started with --no-block so that libvirtd
	// never waits for us.
	return "#!/bin/sh\n"
	       "# kvmxdp libvirt network hook (written by `kvmxdp install`): when a\n"
	       "# network whose bridge has a kvmxdp instance has started, (re)start\n"
	       "# kvmxdp@BRIDGE.  Never calls back into libvirt.\n"
	       "[ \"$2\" = started ] || exit 0\n"
	       "config=" +
	       shq(config) +
	       "\n"
	       "[ -r \"$config\" ] || exit 0\n"
	       "bridge=$(sed -n \"s/.*<bridge[^>]* name=['\\\"]\\([^'\\\"]*\\)['\\\"].*/\\1/p\" | head -n 1)\n"
	       "[ -n \"$bridge\" ] || exit 0\n"
	       "grep -qF \"\\\"bridge\\\": \\\"$bridge\\\"\" \"$config\" || exit 0\n"
	       "command -v systemctl >/dev/null 2>&1 || exit 0\n"
	       "systemctl --no-block start \"kvmxdp@$bridge.service\" || true\n"
	       "exit 0\n";
}

std::vector<std::string> install_files(const InstallOptions &o, const std::string &config)
{
	std::string exe = o.prefix.empty() ? self_exe() : o.prefix + "/sbin/kvmxdp";
	std::string unit_dir = o.unit_dir.empty() ? "/etc/systemd/system" : o.unit_dir;
	std::string hook_dir = o.hook_dir.empty() ? "/etc/libvirt/hooks/network.d" : o.hook_dir;
	// Before anything is written.
	check_unit_path(o.prefix.empty() ? "the binary's path" : "--prefix", exe);
	check_unit_path("--config", config);
	if (!o.bpffs.empty())
		check_unit_path("--bpffs", o.bpffs);
	if (!o.run_dir.empty())
		check_unit_path("--run-dir", o.run_dir);
	std::vector<std::string> written;
	auto put = [&](const std::string &dir, const std::string &name, const std::string &text,
		       mode_t mode) {
		std::string d = o.root + dir;
		mkdir_p(d, 0755);
		std::string p = d + "/" + name;
		atomic_write_file(p, text, mode);
		// atomic_write_file's temp file has the umask applied.
		if (::chmod(p.c_str(), mode) < 0)
			throw_errno("chmod", p);
		written.push_back(p);
	};
	put(unit_dir, "kvmxdp@.service", unit_text(exe, config, o.bpffs, o.run_dir), 0644);
	put(hook_dir, "kvmxdp", hook_text(config), 0755);
	return written;
}

} // namespace kvmxdp
