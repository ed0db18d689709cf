// SPDX-License-Identifier: GPL-2.0
#include "verbs/top_verbs.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <termios.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <algorithm>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <sstream>
#include <thread>

#include "base/clock.hpp"
#include "base/error.hpp"
#include "base/fd.hpp"
#include "base/fs.hpp"
#include "base/netaddr.hpp"
#include "base/netaddr6.hpp"
#include "control/guest_stats.hpp"
#include "model/config.hpp"

namespace kvmxdp {

using nlohmann::json;

namespace {

using Clock = std::chrono::steady_clock;

struct Sample {
	Clock::time_point at;
	std::vector<GuestRow> rows;
};

class TopSource {
public:
	TopSource(const GlobalOptions &g, const std::string &bridge)
	{
		if (!bridge.empty())
			check_ifname(bridge);
		Config cfg = ConfigStore(g.config).load();
		const Instance &inst = select_instance(cfg, bridge, g.config);
		bridge_ = inst.bridge;
		pins_ = open_pin_dir(inst.bpffs, inst.bridge, false);
		if (!pins_)
			throw Error("open pin directory", pin_dir_for(inst.bpffs, inst.bridge),
				    ENOENT);
		maps_ = std::make_unique<PinnedGuestStats>(pins_->dir);
		inst_ = inst;
		libvirt_root_ = g.libvirt_root;
	}
	// Guests that are here now, as the metrics endpoint exports them.  The
	// leases (a guest's hostname, its address's VM) are read anew for
	// every sample: top runs for hours while guests come and go.
	Sample sample()
	{
		try {
			leases_ = instance_leases(inst_);
		} catch (const std::exception &) {
			// Names only (the last ones read stay): the daemon reports a
			// broken lease file.
		}
		vms_ = guest_vm_names(inst_.mappings, libvirt_root_);
		return {Clock::now(), active_guests(read_guest_rows(maps_->fds(), leases_, vms_),
						    boottime_ns(), KVX_GUEST_IDLE_NS)};
	}
	const std::string &bridge() const { return bridge_; }

private:
	std::string bridge_;
	std::optional<PinDir> pins_;
	std::unique_ptr<PinnedGuestStats> maps_;
	Instance inst_;
	std::string libvirt_root_;
	std::vector<Lease> leases_;
	GuestVmNames vms_;
};

// Counters are per slot and never reset: a guest seen in both samples gets
// rates; one new in the second counts from zero.
double rate(uint64_t now, uint64_t before, double secs)
{
	return now >= before && secs > 0 ? static_cast<double>(now - before) / secs : 0;
}

json rows_json(const Sample &a, const Sample &b)
{
	const double secs = std::chrono::duration<double>(b.at - a.at).count();
	std::map<MacAddr, const GuestRow *> prev;
	for (const GuestRow &r : a.rows)
		prev[r.mac] = &r;
	json out = json::array();
	for (const GuestRow &r : b.rows) {
		GuestRow zero;
		auto it = prev.find(r.mac);
		const GuestRow &p = it != prev.end() && it->second->slot == r.slot ? *it->second :
										     zero;
		json addrs = json::array();
		for (uint32_t a4 : r.addrs)
			addrs.push_back(format_ipv4(a4));
		for (const auto &a6 : r.addrs6)
			addrs.push_back(format_ipv6(a6));
		json drops = json::object();
		for (int i = 0; i < KVX_GD_MAX; i++)
			drops[gdrop_name(i)] = r.drops[static_cast<size_t>(i)];
		out.push_back({{"mac", mac_text(r.mac)},
			       {"addrs", addrs},
			       {"vm", r.vm.empty() ? json(nullptr) : json(r.vm)},
			       {"dhcp_hostname",
				r.dhcp_hostname.empty() ? json(nullptr) : json(r.dhcp_hostname)},
			       {"slot", r.slot},
			       {"shared_slot", r.shared},
			       {"flows_out", r.flows_out},
			       {"flows_in", r.flows_in},
			       {"pkts_out", r.pkts_out},
			       {"bytes_out", r.bytes_out},
			       {"pkts_in", r.pkts_in},
			       {"bytes_in", r.bytes_in},
			       {"drops", drops},
			       {"drops_total", r.drops_total()},
			       {"pps_out", rate(r.pkts_out, p.pkts_out, secs)},
			       {"pps_in", rate(r.pkts_in, p.pkts_in, secs)},
			       {"bps_out", 8 * rate(r.bytes_out, p.bytes_out, secs)},
			       {"bps_in", 8 * rate(r.bytes_in, p.bytes_in, secs)},
			       {"drops_per_s", rate(r.drops_total(), p.drops_total(), secs)}});
	}
	return out;
}

json sample_json(const std::string &bridge, const Sample &a, const Sample &b)
{
	return {{"bridge", bridge},
		{"interval_s", std::chrono::duration<double>(b.at - a.at).count()},
		{"guests", rows_json(a, b)}};
}

std::string human(double v, const char *unit)
{
	static const char *prefix[] = {"", "k", "M", "G", "T"};
	int i = 0;
	while (v >= 1000 && i < 4) {
		v /= 1000;
		i++;
	}
	char buf[32];
	std::snprintf(buf, sizeof(buf), v < 10 && i ? "%.1f%s%s" : "%.0f%s%s", v, prefix[i], unit);
	return buf;
}

// The terminal in non-canonical mode while top runs (a key is read without
// Enter), restored on every exit and while top is stopped (Ctrl-Z: the
// shell gets its terminal back with echo on; fg sets it raw again).
class RawTerminal {
public:
	RawTerminal()
	{
		if (!::isatty(0) || ::tcgetattr(0, &saved_) != 0)
			return;
		have_ = true;
		raw();
	}
	~RawTerminal() { restore(); }
	void raw()
	{
		if (!have_)
			return;
		termios t = saved_;
		t.c_lflag &= ~static_cast<tcflag_t>(ICANON | ECHO);
		t.c_cc[VMIN] = 0;
		t.c_cc[VTIME] = 0;
		active_ = ::tcsetattr(0, TCSANOW, &t) == 0;
	}
	void restore()
	{
		if (active_)
			::tcsetattr(0, TCSANOW, &saved_);
		active_ = false;
	}

private:
	termios saved_{};
	bool have_ = false;
	bool active_ = false;
};

// The terminal's height (0: not a terminal, or it does not say).
unsigned terminal_rows()
{
	winsize w{};
	return ::ioctl(1, TIOCGWINSZ, &w) == 0 ? w.ws_row : 0;
}

} // namespace

// The screen for a terminal of `rows` lines (0: unknown, no limit): the
// header, then as many guests as fit, the rest counted in the last line
// (a terminal that scrolled would lose the header, and `top` over ssh has
// whatever height the window has).
std::string top_screen(const json &s, unsigned rows)
{
	std::ostringstream o;
	char line[256];
	bool shared = false;
	std::snprintf(line, sizeof(line), "%.1f", s["interval_s"].get<double>());
	o << "kvmxdp top - bridge " << s["bridge"].get<std::string>() << ", " << s["guests"].size()
	  << " guest(s), every " << line << " s  (q: quit)\n\n";
	// The address column fits the longest shown (an IPv6 address has up
	// to 39 characters, an IPv4 one 15; "+": the guest has more).
	int aw = 15;
	for (const json &g : s["guests"])
		if (!g["addrs"].empty())
			aw = std::max(aw,
				      static_cast<int>(g["addrs"][0].get<std::string>().size()) +
					      (g["addrs"].size() > 1 ? 1 : 0));
	std::snprintf(line, sizeof(line), "%-*s %-17s %-16s %9s %9s %9s %9s %6s %6s %8s\n", aw,
		      "ADDRESS", "MAC", "VM", "PPS_OUT", "PPS_IN", "BPS_OUT", "BPS_IN", "FL_OUT",
		      "FL_IN", "DROPS/S");
	o << line;
	// The header's 3 lines and one left free, so that the cursor after
	// the last line does not scroll the screen.
	const size_t n = s["guests"].size();
	size_t fit = n;
	if (rows)
		fit = rows > 4 ? rows - 4 : 1;
	size_t shown = 0;
	for (const json &g : s["guests"]) {
		if (n > fit && shown + 1 >= fit) {
			o << "... and " << n - shown << " more guest(s): a taller terminal, or "
			  << "top --json\n";
			break;
		}
		shown++;
		std::string addr = g["addrs"].empty() ? "-" : g["addrs"][0].get<std::string>();
		if (g["addrs"].size() > 1)
			addr += "+";
		// The VM's name where libvirt says it, else the guest's own DHCP
		// hostname in parentheses (the guest chose it).
		std::string name = !g["vm"].is_null() ?
					   g["vm"].get<std::string>() :
				   !g["dhcp_hostname"].is_null() ?
					   "(" + g["dhcp_hostname"].get<std::string>() + ")" :
					   "-";
		if (g["shared_slot"].get<bool>()) {
			name += "*";
			shared = true;
		}
		std::snprintf(line, sizeof(line),
			      "%-*s %-17s %-16.16s %9s %9s %9s %9s %6u %6u %8s\n", aw, addr.c_str(),
			      g["mac"].get<std::string>().c_str(), name.c_str(),
			      human(g["pps_out"].get<double>(), "").c_str(),
			      human(g["pps_in"].get<double>(), "").c_str(),
			      human(g["bps_out"].get<double>(), "b").c_str(),
			      human(g["bps_in"].get<double>(), "b").c_str(),
			      g["flows_out"].get<unsigned>(), g["flows_in"].get<unsigned>(),
			      human(g["drops_per_s"].get<double>(), "").c_str());
		o << line;
	}
	if (shared)
		o << "\n* counters shared with another guest (same slot)\n";
	return o.str();
}

json top_sample(const GlobalOptions &g, const TopOptions &o)
{
	TopSource src(g, o.bridge);
	const Sample a = src.sample();
	std::this_thread::sleep_for(std::chrono::duration<double>(o.interval));
	return sample_json(src.bridge(), a, src.sample());
}

int run_top(const GlobalOptions &g, const TopOptions &o, std::ostream &out)
{
	TopSource src(g, o.bridge);
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	// Ctrl-Z: the terminal restored before top stops (a SIGTSTP taken
	// through the signalfd, then SIGSTOP, which cannot be caught).
	sigaddset(&sigs, SIGTSTP);
	pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
	Fd sfd(::signalfd(-1, &sigs, SFD_CLOEXEC));
	if (!sfd)
		throw_errno("create", "signalfd");
	RawTerminal term;
	const bool tty = ::isatty(0);
	Sample prev = src.sample();
	const int ms = static_cast<int>(std::lround(o.interval * 1000));
	for (;;) {
		auto deadline = Clock::now() + std::chrono::milliseconds(ms);
		for (;;) {
			int left = static_cast<int>(
				std::chrono::duration_cast<std::chrono::milliseconds>(deadline -
										      Clock::now())
					.count());
			if (left <= 0)
				break;
			pollfd p[2] = {{sfd.get(), POLLIN, 0}, {0, POLLIN, 0}};
			int n = ::poll(p, tty ? 2 : 1, left);
			if (n < 0 && errno != EINTR)
				throw_errno("poll", "terminal");
			if (n > 0 && (p[0].revents & POLLIN)) {
				signalfd_siginfo si{};
				if (::read(sfd.get(), &si, sizeof(si)) == sizeof(si) &&
				    si.ssi_signo == SIGTSTP) {
					term.restore();
					::kill(::getpid(), SIGSTOP);
					// Continued (fg): raw again, redrawn at once.
					term.raw();
					out << "\x1b[H\x1b[J" << std::flush;
					break;
				}
				return 0;
			}
			if (n > 0 && tty && (p[1].revents & (POLLIN | POLLHUP))) {
				char c = 0;
				ssize_t r = ::read(0, &c, 1);
				if (r <= 0 || c == 'q' || c == 'Q')
					return 0;
			}
		}
		Sample now = src.sample();
		// Home, clear to the end: no flicker from a full clear.
		out << "\x1b[H\x1b[J"
		    << top_screen(sample_json(src.bridge(), prev, now), tty ? terminal_rows() : 0)
		    << std::flush;
		prev = std::move(now);
	}
}

} // namespace kvmxdp
