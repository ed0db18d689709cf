// SPDX-License-Identifier: GPL-2.0
#include "daemon.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>

#include "bpf_objects.hpp"
#include "error.hpp"
#include "gc.hpp"
#include "maps.hpp"
#include "netaddr.hpp"
#include "netlink.hpp"

namespace kvmxdp {

namespace {

void info(const std::string &msg)
{
	std::fprintf(stderr, "kvmxdp: %s\n", msg.c_str());
}

Fd dup_fd(int fd, const char *what)
{
	int d = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (d < 0)
		throw_errno("dup fd of", what);
	return Fd(d);
}

std::string addr_str(uint32_t be)
{
	return be ? format_ipv4(ntohl(be)) : "none";
}

} // namespace

Daemon::Daemon(const Instance &inst, Skeleton &skel, int uplink_ifindex, std::string config_path)
	: inst_(inst)
	, skel_(skel)
	, config_path_(std::move(config_path))
	, uplink_ifindex_(uplink_ifindex)
	, cfg_fd_(dup_fd(skel.map_fd(KVX_MAP_CFG), KVX_MAP_CFG))
	, ct_fd_(dup_fd(skel.map_fd(KVX_MAP_CT), KVX_MAP_CT))
	, bind_fd_(dup_fd(skel.map_fd(KVX_MAP_BIND), KVX_MAP_BIND))
{
}

Daemon::~Daemon() = default;

void Daemon::refresh_uplink(NlSocket &nl)
{
	auto link = find_link(nl, inst_.uplink);
	uint32_t addr_be = 0;
	if (link) {
		if (auto a = primary_ipv4(ipv4_addrs(nl, link->ifindex)))
			addr_be = htonl(a->addr);
	}
	kvx_cfg cfg = read_cfg(cfg_fd_.get());
	bool dirty = false;
	if (link && link->ifindex != uplink_ifindex_) {
		// The uplink was re-created (a new ifindex): its TC filter went
		// with the old device, so attach ours to the new one.
		info("uplink " + inst_.uplink + " is back as ifindex " +
		     std::to_string(link->ifindex) + ": re-attaching");
		try {
			bool created = tc_hook_create(link->ifindex, inst_.uplink);
			if (created && !inst_.clsact_created_uplink)
				record_uplink_clsact();
			tc_attach(link->ifindex, inst_.uplink, skel_.prog_fd("kvx_up_ingress"));
			uplink_ifindex_ = link->ifindex;
			cfg.uplink_ifindex = static_cast<__u32>(link->ifindex);
			dirty = true;
		} catch (const Error &e) {
			// Retried on the next event or tick.
			info(std::string("re-attach to uplink failed: ") + e.what());
		}
	}
	// A re-created uplink (or a changed MAC) changes the source MAC of
	// the ARP replies the datapath sends for mapped addresses.
	if (link && std::memcmp(cfg.uplink_mac, link->mac.data(), sizeof(cfg.uplink_mac)) != 0) {
		std::memcpy(cfg.uplink_mac, link->mac.data(), sizeof(cfg.uplink_mac));
		dirty = true;
	}
	uint32_t old = cfg.uplink_addr;
	if (addr_be != old) {
		cfg.uplink_addr = addr_be;
		dirty = true;
	}
	if (dirty)
		write_cfg(cfg_fd_.get(), cfg);
	if (addr_be != old) {
		info("uplink " + inst_.uplink + " address " + addr_str(old) + " -> " +
		     addr_str(addr_be));
		// Written first, flushed second: new flows already use the new
		// address while the old ones go (einat#34: never stay at 0).
		auto r = flush_ext_addr(ct_fd_.get(), bind_fd_.get(), old);
		if (r.ct_deleted || r.bind_deleted)
			info("flushed " + std::to_string(r.ct_deleted) + " flow(s) and " +
			     std::to_string(r.bind_deleted) + " binding entr(ies) of " +
			     addr_str(old));
	}
}

void Daemon::record_uplink_clsact()
{
	try {
		ConfigStore store(config_path_);
		FileLock lock = store.lock();
		Config cfg = store.load();
		if (Instance *i = cfg.find(inst_.bridge)) {
			i->clsact_created_uplink = true;
			store.save(cfg);
		}
		inst_.clsact_created_uplink = true;
	} catch (const Error &e) {
		// Only cost: detach leaves an empty clsact qdisc behind.
		info(std::string("recording the uplink's clsact in the config: ") + e.what());
	}
}

void Daemon::collect_garbage()
{
	kvx_cfg cfg = read_cfg(cfg_fd_.get());
	auto r = gc_sweep(ct_fd_.get(), bind_fd_.get(), cfg.timeouts, boottime_ns());
	if (r.ct_deleted || r.bind_deleted)
		log_verbose("gc: " + std::to_string(r.ct_deleted) + " flow(s), " +
			    std::to_string(r.bind_deleted) + " binding entr(ies) expired");
}

int Daemon::run()
{
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
	Fd sfd(::signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK));
	if (!sfd)
		throw_errno("create", "signalfd");

	NlMonitor mon;
	NlSocket nl;
	using clock = std::chrono::steady_clock;
	auto next_gc = clock::now() + std::chrono::milliseconds(kGcIntervalMs);
	auto next_refresh = clock::now();

	for (;;) {
		auto now = clock::now();
		if (now >= next_refresh) {
			// Safety net besides events (lost on overrun, or a
			// device that came back under the same name).
			try {
				refresh_uplink(nl);
			} catch (const Error &e) {
				info(std::string("uplink refresh: ") + e.what());
			}
			next_refresh = now + std::chrono::milliseconds(kPollMs);
		}
		if (now >= next_gc) {
			try {
				collect_garbage();
			} catch (const Error &e) {
				info(std::string("gc: ") + e.what());
			}
			next_gc = now + std::chrono::milliseconds(kGcIntervalMs);
		}
		auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(
			std::min(next_refresh, next_gc) - clock::now());
		pollfd fds[2] = {{sfd.get(), POLLIN, 0}, {mon.fd(), POLLIN, 0}};
		int n = ::poll(fds, 2, static_cast<int>(std::max<int64_t>(wait.count(), 0)));
		if (n < 0 && errno != EINTR)
			throw_errno("poll", "daemon");
		if (n <= 0)
			continue;
		if (fds[0].revents & POLLIN) {
			signalfd_siginfo si{};
			(void)!::read(sfd.get(), &si, sizeof(si));
			info("signal " + std::to_string(si.ssi_signo) +
			     ": control plane stops, datapath stays attached");
			return 0;
		}
		if ((fds[1].revents & POLLIN) && mon.drain()) {
			try {
				refresh_uplink(nl);
			} catch (const Error &e) {
				info(std::string("uplink refresh: ") + e.what());
			}
		}
	}
}

} // namespace kvmxdp
