// SPDX-License-Identifier: GPL-2.0
// `kvmxdp install`: the systemd unit kvmxdp@.service (instance = bridge) and
// the libvirt network hook.  The texts live here only; `cmake --install`
// runs this same verb, so both install paths write identical files.
#include "verbs/install.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <initializer_list>
#include <vector>

#include "base/error.hpp"
#include "base/fs.hpp"
#include "base/text.hpp"
#include "model/options.hpp"

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

// One word of a unit file's value, as systemd splits and expands it: it
// unquotes double quotes and expands '%' specifiers everywhere, and '$'
// variables in ExecStart= lines only (exec).  An empty ExecStart= argument
// must be quoted to count.
std::string sdq(const std::string &s, bool exec = true)
{
	std::string body;
	bool quote = exec && s.empty();
	for (char c : s) {
		if (c == '%' || (exec && c == '$'))
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

// path with "//", "." and ".." resolved by name, then by the file system
// when it exists (a symbolic link such as /var/run -> /run).
std::string canonical_dir(const std::string &path)
{
	std::vector<std::string> parts;
	size_t pos = 0;
	while (pos <= path.size()) {
		size_t slash = path.find('/', pos);
		if (slash == std::string::npos)
			slash = path.size();
		const std::string part = path.substr(pos, slash - pos);
		pos = slash + 1;
		if (part.empty() || part == ".")
			continue;
		if (part == "..") {
			if (!parts.empty())
				parts.pop_back();
			continue;
		}
		parts.push_back(part);
	}
	std::string out;
	for (const auto &p : parts)
		out += "/" + p;
	if (out.empty())
		out = "/";
	char buf[PATH_MAX];
	if (::realpath(out.c_str(), buf))
		out = buf;
	return out;
}

// A directory the unit hands to the daemon (RuntimeDirectory=,
// ConfigurationDirectory=, ReadWritePaths=) must be one of its own: the
// unit would otherwise make a system directory writable for it (--config
// /etc/kvmxdp.json: ReadWritePaths=/etc), and systemd would create, chown
// or chmod it as the daemon's (RuntimeDirectory=.. is /run itself).
void check_unit_dir(const std::string &what, const std::string &value, const std::string &dir)
{
	static const char *const kSystemDirs[] = {
		"/",	    "/bin",	  "/boot",	  "/dev",	  "/etc",      "/home",
		"/lib",	    "/lib32",	  "/lib64",	  "/libx32",	  "/media",    "/mnt",
		"/opt",	    "/proc",	  "/root",	  "/run",	  "/run/user", "/sbin",
		"/srv",	    "/sys",	  "/sys/fs",	  "/tmp",	  "/usr",      "/usr/bin",
		"/usr/lib", "/usr/local", "/usr/sbin",	  "/var",	  "/var/lib",  "/var/log",
		"/var/run", "/var/tmp",	  "/etc/systemd", "/etc/libvirt",
	};
	const std::string c = canonical_dir(dir);
	const std::string own = std::string("use a directory of its own (") +
				(what == "--config"  ? "/etc/kvmxdp/kvmxdp.json" :
				 what == "--run-dir" ? "/run/kvmxdp" :
						       "the default /sys/fs/bpf") +
				")";
	for (const char *s : kSystemDirs)
		if (c == s)
			throw Error("install: " + what + " '" + printable(value) +
				    "' gives the unit " + c +
				    " itself: the daemon would get a system directory to write; " +
				    own);
	// Beyond that list, only what is kvmxdp's by its name or not there yet
	// (made by systemd or kvmxdp): --config /etc/cron.d/k.json would
	// otherwise get cron.d made 0700 and writable by the daemon, --run-dir
	// /usr/local/bin a directory root runs programs from.  A bpffs is the
	// daemon's to write whatever its name.
	const std::string name = c.substr(c.rfind('/') + 1);
	struct stat st = {};
	if (name.find("kvmxdp") != std::string::npos || ::stat(c.c_str(), &st) < 0 ||
	    (what == "--bpffs" && is_bpffs(c)))
		return;
	throw Error("install: " + what + " '" + printable(value) + "' gives the unit " + c +
		    ", an existing directory that is not kvmxdp's (its name lacks 'kvmxdp'): the "
		    "daemon would get another program's directory to write; " +
		    own);
}

// A path in a file-system directive (ReadWritePaths=, RequiresMountsFor=).
std::string sd_path(const std::string &s)
{
	return sdq(s, false);
}

std::string self_exe()
{
	char buf[PATH_MAX];
	ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
	if (n <= 0)
		throw_errno("readlink", "/proc/self/exe");
	return std::string(buf, static_cast<size_t>(n));
}

std::string parent_dir(const std::string &path)
{
	auto slash = path.rfind('/');
	return slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
}

// The part of path below top ("/etc/kvmxdp" under "/etc": "kvmxdp"), or ""
// when it does not lie below it.
std::string below(const std::string &path, const std::string &top)
{
	if (path.size() <= top.size() + 1 || path.compare(0, top.size(), top) != 0 ||
	    path[top.size()] != '/')
		return "";
	return path.substr(top.size() + 1);
}

bool under_any(const std::vector<std::string> &paths, std::initializer_list<const char *> tops)
{
	for (const auto &p : paths)
		for (const char *t : tops)
			if (p == t || !below(p, t).empty())
				return true;
	return false;
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

	// Where the daemon writes, under ProtectSystem=strict: a directory of
	// its own that systemd creates below /etc or /run, else an explicit
	// ReadWritePaths= entry (which must exist: '-' skips it otherwise,
	// and the daemon then names the read-only path it could not write).
	const GlobalOptions defaults;
	const std::string run = run_dir.empty() ? defaults.run_dir : normalize_dir(run_dir);
	const std::string cfg_dir = parent_dir(config);
	std::string dirs, writable, mounts;
	if (!below(cfg_dir, "/etc").empty())
		dirs += "ConfigurationDirectory=" + sd_path(below(cfg_dir, "/etc")) +
			"\nConfigurationDirectoryMode=0700\n";
	else
		writable += " " + sd_path("-" + cfg_dir);
	if (!below(run, "/run").empty())
		dirs += "RuntimeDirectory=" + sd_path(below(run, "/run")) +
			"\nRuntimeDirectoryMode=0700\n"
			"# Other instances' pid files live there too: never removed.\n"
			"RuntimeDirectoryPreserve=yes\n";
	else
		writable += " " + sd_path("-" + run);
	// /proc/sys and /sys, which ProtectSystem=strict leaves writable, are
	// made read-only below (kernel/core_pattern or kernel/modprobe written
	// by root run a program of its choice outside the sandbox): the
	// sysctls kvmxdp writes (net/ipv4/conf/BR/forwarding,
	// net/ipv4/ip_local_reserved_ports, and with IPv6 on
	// net/ipv6/conf/BR/forwarding) and the bpffs are reopened.  The
	// deeper path wins whichever list names it.
	// ("-": a kernel booted with ipv6.disable=1 has no net/ipv6.)
	writable += " /proc/sys/net/ipv4 -/proc/sys/net/ipv6/conf";
	if (!bpffs.empty()) {
		writable += " " + sd_path("-" + normalize_dir(bpffs));
		mounts = "RequiresMountsFor=" + sd_path(normalize_dir(bpffs)) + "\n";
	} else {
		writable += " " + sd_path("-" + defaults.bpffs);
	}
	dirs += "ReadOnlyPaths=/proc/sys -/proc/sysrq-trigger /sys\n"
		"ReadWritePaths=" +
		writable.substr(1) + "\n";
	// A binary or a path in /tmp or a home directory (a build tree, a
	// test) would be hidden by the private /tmp and ProtectHome=yes.
	const std::vector<std::string> used = {exe, config, run,
					       bpffs.empty() ? defaults.bpffs : bpffs};
	const std::string tmp = under_any(used, {"/tmp", "/var/tmp"}) ?
					"# The binary or a path lies under /tmp: no private /tmp.\n"
					"PrivateTmp=no\n" :
					"PrivateTmp=yes\n";
	const std::string home = under_any(used, {"/home", "/root", "/run/user"}) ?
					 "# The binary or a path lies in a home directory.\n"
					 "ProtectHome=read-only\n" :
					 "ProtectHome=yes\n";

	// %I: the instance unescaped, so that a bridge named like "br-lan"
	// (instance "br\x2dlan", what systemd-escape makes of it) reaches
	// attach as it is; the libvirt hook escapes the same way.
	return "# kvmxdp@BRIDGE.service: the kvmxdp datapath and daemon of one bridge.\n"
	       "# Written by `kvmxdp install`.  Enable with\n"
	       "#   systemctl enable --now kvmxdp@virbr0\n"
	       "# A bridge name with '-' or other characters systemd escapes:\n"
	       "#   systemctl enable --now \"kvmxdp@$(systemd-escape br-lan)\"\n"
	       "# The bridge's uplink, subnet and mappings come from " +
	       config +
	       "\n"
	       "# (recorded by the first `kvmxdp attach --bridge BR --uplink IF`).\n"
	       "# Stopping the service stops the daemon only: the datapath stays\n"
	       "# attached; `kvmxdp detach --bridge BR` removes it.\n"
	       "[Unit]\n"
	       "Description=kvmxdp eBPF NAT for the KVM guests on bridge %I\n"
	       "After=network.target libvirtd.service\n"
	       "Wants=network.target\n"
	       "# A bridge that does not exist yet is retried every 5 s for about\n"
	       "# a minute; the libvirt hook starts the unit again when it comes.\n"
	       "StartLimitIntervalSec=120\n"
	       "StartLimitBurst=10\n" +
	       mounts +
	       "\n"
	       "[Service]\n"
	       "# The daemon says READY=1 once the datapath is attached (sd_notify),\n"
	       "# then pings the watchdog from its main loop at half the interval:\n"
	       "# a daemon stuck in a step is killed and restarted (the datapath\n"
	       "# goes on meanwhile).  A garbage-collection sweep of a full 2^24-entry\n"
	       "# table takes seconds, not a minute.\n"
	       "Type=notify\n"
	       "WatchdogSec=60\n"
	       "ExecStart=" +
	       sdq(exe) + globals +
	       " attach --bridge %I\n"
	       "# Re-reads the config's mappings and the DHCP leases (SIGHUP); the\n"
	       "# daemon brackets the work with RELOADING=1 and READY=1.\n"
	       "ExecReload=kill -HUP $MAINPID\n"
	       "Restart=on-failure\n"
	       "RestartSec=5\n"
	       "# 2: usage error; 78: configuration error (invalid config, no instance\n"
	       "# of this bridge, missing capabilities).  A restart cannot help.\n"
	       "RestartPreventExitStatus=2 78\n"
	       "\n"
	       "# The sandbox (systemd-networkd's unit is the model).  Root with these\n"
	       "# capabilities only: CAP_BPF (maps, programs, pins), CAP_NET_ADMIN (TC,\n"
	       "# XDP and cgroup hooks, netlink, the forwarding sysctls), CAP_PERFMON\n"
	       "# (the verifier accepts the datapath's packet pointer arithmetic only\n"
	       "# with it), CAP_NET_RAW (the RFC 5227 ARP probes of a mapped address\n"
	       "# coming back, and relay's router advertisements: raw ICMPv6).\n"
	       "CapabilityBoundingSet=CAP_BPF CAP_NET_ADMIN CAP_PERFMON CAP_NET_RAW\n"
	       "NoNewPrivileges=yes\n"
	       "UMask=0077\n"
	       "# Read-only but the config, the pid files, the bpffs and the sysctls of\n"
	       "# net/ipv4 (forwarding, reserved ports) and net/ipv6/conf (the bridge's\n"
	       "# forwarding with IPv6 on): /proc/sys, /proc/sysrq-trigger\n"
	       "# and /sys too, where root could otherwise run a program outside the\n"
	       "# sandbox (kernel/core_pattern, kernel/modprobe, uevent_helper).\n"
	       "ProtectSystem=strict\n" +
	       dirs + tmp + home +
	       "PrivateDevices=yes\n"
	       "PrivateMounts=yes\n"
	       "ProtectKernelModules=yes\n"
	       "ProtectKernelLogs=yes\n"
	       "# The cgroup hooks attach to the cgroup v2 root through a read-only fd.\n"
	       "ProtectControlGroups=yes\n"
	       "ProtectClock=yes\n"
	       "ProtectHostname=yes\n"
	       "# The daemon reads /proc/self and /proc/sys only.\n"
	       "ProtectProc=invisible\n"
	       "# Netlink, glibc's interface name ioctls (AF_UNIX), the network\n"
	       "# namespace's cookie and the metrics endpoint (AF_INET), relay's router\n"
	       "# advertisements (AF_INET6 raw ICMPv6), ARP probes (AF_PACKET).\n"
	       "RestrictAddressFamilies=AF_UNIX AF_NETLINK AF_INET AF_INET6 AF_PACKET\n"
	       "# No IP traffic but a scrape of --metrics on loopback (another address\n"
	       "# needs its own IPAddressAllow= in a drop-in).  ARP and the datapath's\n"
	       "# packets are not the unit's IP traffic.\n"
	       "IPAddressDeny=any\n"
	       "IPAddressAllow=localhost\n"
	       "RestrictNamespaces=yes\n"
	       "RestrictRealtime=yes\n"
	       "RestrictSUIDSGID=yes\n"
	       "LockPersonality=yes\n"
	       "MemoryDenyWriteExecute=yes\n"
	       "SystemCallArchitectures=native\n"
	       "# @system-service and bpf(2), less @privileged and @resources (which\n"
	       "# hold bpf(2) too: added back).  Anything else fails with EPERM and\n"
	       "# one error line instead of killing the daemon.\n"
	       "SystemCallFilter=@system-service bpf\n"
	       "SystemCallFilter=~@privileged @resources\n"
	       "SystemCallFilter=bpf\n"
	       "SystemCallErrorNumber=EPERM\n"
	       "# Left out, and why:\n"
	       "# - User=, AmbientCapabilities=: root owns the pins, the config and the\n"
	       "#   lock files that `kvmxdp` run from a root shell shares; the bounding\n"
	       "#   set above limits root instead (no CAP_DAC_OVERRIDE: only root's files).\n"
	       "# - ProtectKernelTunables=: makes /sys/fs/bpf read-only under that very\n"
	       "#   name, which ReadWritePaths= cannot reopen (the read-only entry of the\n"
	       "#   same path wins): ReadOnlyPaths= above does its work instead.\n"
	       "#   ProcSubset=pid: hides /proc/sys.\n"
	       "# - PrivateNetwork=, PrivateUsers=: the datapath is the host's network,\n"
	       "#   and the capabilities must be the initial user namespace's.\n"
	       "# - CAP_SYS_ADMIN, @mount: the daemon mounts nothing here (/sys/fs/bpf\n"
	       "#   and the cgroup v2 root are systemd's mounts).\n"
	       "\n"
	       "[Install]\n"
	       "WantedBy=multi-user.target\n";
}

namespace {

// The global options of a hook's kvmxdp command line, for sh.
std::string hook_globals(const std::string &config, const std::string &bpffs,
			 const std::string &run_dir)
{
	std::string s = " --config " + shq(config);
	if (!bpffs.empty())
		s += " --bpffs " + shq(bpffs);
	if (!run_dir.empty())
		s += " --run-dir " + shq(run_dir);
	return s;
}

} // namespace

std::string hook_text(const std::string &config, const std::string &exe, const std::string &bpffs,
		      const std::string &run_dir)
{
	// libvirt runs network hooks as `network NAME OPERATION SUBOP -` with
	// the network XML on stdin.  A hook must not call back into libvirt
	// (libvirt.org/hooks.html: deadlock): the bridge name comes from the
	// XML, and the service is started with --no-block so that libvirtd
	// never waits for us.  The instance is the bridge name escaped as the
	// unit's %I unescapes it (systemd-escape: '-' becomes \x2d).  The
	// start-limit counter is reset first: at boot the unit may have given
	// up on a bridge that libvirt creates only now.
	//
	// The mappings in the network's kvmxdp metadata come first (they are
	// recorded in the config, which the daemon then starts with).  Only
	// malformed metadata is an error, the hook's exit status, which makes
	// libvirt refuse to start the network with one error line; what may
	// pass (the bridge not attached yet, no uplink address) leaves the
	// mappings pending for the daemon.  A binary that is gone (the
	// package removed, this conffile kept) is skipped.
	return "#!/bin/sh\n"
	       "# kvmxdp libvirt network hook (written by `kvmxdp install`): makes and\n"
	       "# removes the mappings in a network's kvmxdp metadata, and when a\n"
	       "# network whose bridge has a kvmxdp instance has started, (re)starts\n"
	       "# kvmxdp@BRIDGE.  Never calls back into libvirt.\n"
	       "xml=$(cat)\n"
	       "status=0\n"
	       "exe=" +
	       shq(exe) +
	       "\n"
	       "if [ -x \"$exe\" ]; then\n"
	       "\tprintf '%s\\n' \"$xml\" | \"$exe\"" +
	       hook_globals(config, bpffs, run_dir) +
	       " libvirt-hook network \"$@\" || status=$?\n"
	       "fi\n"
	       "[ \"$2\" = started ] || exit $status\n"
	       "config=" +
	       shq(config) +
	       "\n"
	       "[ -r \"$config\" ] || exit $status\n" +
	       // Parsed, not grepped: XML attributes may be quoted either way
	       // and hold entities, JSON strings escapes, and a bridge name
	       // may hold any character but '/', ':' and blanks.  Isolated
	       // (-I): run as root, python3 must import its own json and xml,
	       // not modules found through PYTHONPATH, the working directory
	       // or the user's site directory.
	       R"(if ! command -v python3 >/dev/null 2>&1; then
	echo "kvmxdp hook: python3 not found: cannot read $config" >&2
	exit $status
fi
bridge=$(printf '%s\n' "$xml" | python3 -I -c '
import json, sys, xml.etree.ElementTree as ET
try:
    net = ET.fromstring(sys.stdin.read())
    nets = [net] if net.tag == "network" else list(net.iter("network"))
    br = nets[0].find("bridge") if nets else None
    name = br.get("name") if br is not None else None
    with open(sys.argv[1], encoding="utf-8") as f:
        cfg = json.load(f)
    if name and any(isinstance(i, dict) and i.get("bridge") == name
                    for i in cfg.get("instances", [])):
        sys.stdout.write(name)
except Exception as e:
    sys.stderr.write("kvmxdp hook: %s\n" % e)
' "$config") || exit $status
)"
	       "[ -n \"$bridge\" ] || exit $status\n"
	       "command -v systemctl >/dev/null 2>&1 || exit $status\n"
	       "unit=$(systemd-escape --template=kvmxdp@.service -- \"$bridge\") || exit $status\n"
	       "systemctl reset-failed \"$unit\" >/dev/null 2>&1 || true\n"
	       "systemctl --no-block start \"$unit\" || true\n"
	       "exit $status\n";
}

std::string qemu_hook_text(const std::string &exe, const std::string &config,
			   const std::string &bpffs, const std::string &run_dir)
{
	// libvirt (>= 6.5) runs every executable in hooks/qemu.d/ as
	// `NAME OPERATION SUBOP EXTRA` with the domain XML on stdin, beside a
	// user's own hooks/qemu.  kvmxdp reads the XML and libvirt's files
	// only (never virsh: libvirtd waits for the hook).  A failed "started"
	// makes libvirt stop the domain: malformed kvmxdp metadata is an
	// error line there, not a VM running without its forwards; what may
	// pass (no lease yet, no uplink address) is not (pending mappings).
	return "#!/bin/sh\n"
	       "# kvmxdp libvirt qemu hook (written by `kvmxdp install`): makes the\n"
	       "# mappings in a domain's kvmxdp metadata when it has started and\n"
	       "# removes them when it stops.  Never calls back into libvirt.\n"
	       "exe=" +
	       shq(exe) +
	       "\n"
	       "# A binary that is gone (the package removed, this conffile kept).\n"
	       "[ -x \"$exe\" ] || exit 0\n"
	       "exec \"$exe\"" +
	       hook_globals(config, bpffs, run_dir) + " libvirt-hook qemu \"$@\"\n";
}

std::vector<std::string> install_files(const InstallOptions &o, const std::string &config)
{
	std::string exe = o.prefix.empty() ? self_exe() : o.prefix + "/sbin/kvmxdp";
	std::string unit_dir = o.unit_dir.empty() ? "/etc/systemd/system" : o.unit_dir;
	std::string hook_dir = o.hook_dir.empty() ? "/etc/libvirt/hooks/network.d" : o.hook_dir;
	std::string qemu_hook_dir = o.qemu_hook_dir.empty() ? "/etc/libvirt/hooks/qemu.d" :
							      o.qemu_hook_dir;
	// Before anything is written.
	check_unit_path(o.prefix.empty() ? "the binary's path" : "--prefix", exe);
	check_unit_path("--config", config);
	if (!o.bpffs.empty())
		check_unit_path("--bpffs", o.bpffs);
	if (!o.run_dir.empty())
		check_unit_path("--run-dir", o.run_dir);
	check_unit_dir("--config", config, parent_dir(config));
	if (!o.bpffs.empty())
		check_unit_dir("--bpffs", o.bpffs, o.bpffs);
	if (!o.run_dir.empty())
		check_unit_dir("--run-dir", o.run_dir, o.run_dir);
	// The unit gets the directories checked above, not their spelling
	// ("/etc/kvmxdp/../kvmxdp/x.json", a link: another directory once
	// the link changes).
	const std::string base = config.substr(config.rfind('/') + 1);
	const std::string cfg_dir = canonical_dir(parent_dir(config));
	const std::string cfg = (cfg_dir == "/" ? "" : cfg_dir) + "/" + base;
	const std::string bpffs = o.bpffs.empty() ? "" : canonical_dir(o.bpffs);
	const std::string run_dir = o.run_dir.empty() ? "" : canonical_dir(o.run_dir);
	check_unit_path("--config", cfg);
	if (!bpffs.empty())
		check_unit_path("--bpffs", bpffs);
	if (!run_dir.empty())
		check_unit_path("--run-dir", run_dir);
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
	put(unit_dir, "kvmxdp@.service", unit_text(exe, cfg, bpffs, run_dir), 0644);
	put(hook_dir, "kvmxdp", hook_text(cfg, exe, bpffs, run_dir), 0755);
	put(qemu_hook_dir, "kvmxdp", qemu_hook_text(exe, cfg, bpffs, run_dir), 0755);
	return written;
}

} // namespace kvmxdp
