// SPDX-License-Identifier: GPL-2.0
#include "control/dad.hpp"

#include <arpa/inet.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "base/error.hpp"
#include "base/sysctl.hpp"
#include "kernel/packet.hpp"

namespace kvmxdp {

namespace {

// ICMPv6 right after the fixed header, type 135 or 136 (offsets from the
// network header: SOCK_DGRAM).  A message behind extension headers is no
// valid ND message anyway (RFC 4861 7.1).
const sock_filter kNdFilter[] = {
	BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 6),
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 58, 0, 4),
	BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 40),
	BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 135, 0, 2),
	BPF_JUMP(BPF_JMP | BPF_JGT | BPF_K, 136, 1, 0),
	BPF_STMT(BPF_RET | BPF_K, 256),
	BPF_STMT(BPF_RET | BPF_K, 0),
};

// Protocol 0 at socket(), the filter, then bind(): as kernel/arp.cpp's
// socket, nothing from another device (or anything but ND) is queued
// before the socket is narrowed.  proto 0 at bind: receives nothing.
Fd nd_socket(int ifindex, bool receive)
{
	Fd s(::socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
	if (!s)
		throw_errno("open", "AF_PACKET socket");
	if (receive) {
		sock_fprog prog{static_cast<unsigned short>(std::size(kNdFilter)),
				const_cast<sock_filter *>(kNdFilter)};
		if (::setsockopt(s.get(), SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)) < 0)
			throw_errno("attach the ND filter to", "AF_PACKET socket");
	}
	sockaddr_ll sll{};
	sll.sll_family = AF_PACKET;
	sll.sll_protocol = receive ? htons(ETH_P_IPV6) : 0;
	sll.sll_ifindex = ifindex;
	if (::bind(s.get(), reinterpret_cast<sockaddr *>(&sll), sizeof(sll)) < 0)
		throw_errno("bind", "AF_PACKET socket");
	return s;
}

void membership(int fd, int ifindex, const MacAddr &mac, bool add)
{
	packet_mreq mr{};
	mr.mr_ifindex = ifindex;
	mr.mr_type = PACKET_MR_MULTICAST;
	mr.mr_alen = 6;
	std::memcpy(mr.mr_address, mac.data(), 6);
	if (::setsockopt(fd, SOL_PACKET, add ? PACKET_ADD_MEMBERSHIP : PACKET_DROP_MEMBERSHIP, &mr,
			 sizeof(mr)) < 0 &&
	    add)
		throw_errno("join a multicast group on", "ifindex " + std::to_string(ifindex));
}

// An IPv6 packet to the group's MAC; the kernel puts the device's own MAC
// as the source.
void send_ip6(int fd, int ifindex, const std::vector<uint8_t> &pkt, const Ipv6Addr &dst)
{
	if (const int err = packet_send(fd, ifindex, ETH_P_IPV6, ipv6_multicast_mac(dst),
					pkt.data(), pkt.size())) {
		errno = err;
		throw_errno("send a Neighbour Discovery message on",
			    "ifindex " + std::to_string(ifindex));
	}
}

} // namespace

GroupJoin::GroupJoin(int ifindex, const Ipv6Addr &group)
	: ifindex_(ifindex)
	, group_(group)
{
	sock_ = Fd(::socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0));
	if (sock_) {
		ipv6_mreq mr{};
		std::memcpy(&mr.ipv6mr_multiaddr, group.data(), group.size());
		mr.ipv6mr_interface = static_cast<unsigned>(ifindex);
		mld_ = ::setsockopt(sock_.get(), IPPROTO_IPV6, IPV6_JOIN_GROUP, &mr, sizeof(mr)) ==
		       0;
	}
	if (mld_)
		return;
	// No IPv6 on the device (or none in the kernel): the NIC's filter at
	// least, as before MLD.
	sock_ = nd_socket(ifindex, false);
	membership(sock_.get(), ifindex, ipv6_multicast_mac(group), true);
}

GroupJoin::~GroupJoin()
{
	// Closing the socket leaves either way; said explicitly for the
	// link-layer one, whose socket the kernel may hold a moment longer.
	if (sock_ && !mld_)
		membership(sock_.get(), ifindex_, ipv6_multicast_mac(group_), false);
}

bool link_has_carrier(int ifindex)
{
	char name[IF_NAMESIZE] = {};
	if (!::if_indextoname(static_cast<unsigned>(ifindex), name))
		return false;
	Fd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
	if (!s)
		throw_errno("open", "a socket to read the flags of " + std::string(name));
	ifreq ifr{};
	std::memcpy(ifr.ifr_name, name, sizeof(ifr.ifr_name) - 1);
	if (::ioctl(s.get(), SIOCGIFFLAGS, &ifr) < 0)
		return false;
	return (ifr.ifr_flags & IFF_UP) && (ifr.ifr_flags & IFF_RUNNING);
}

int uplink_dad_transmits(int ifindex, const std::string &sysctl_root)
{
	char name[IF_NAMESIZE] = {};
	if (!::if_indextoname(static_cast<unsigned>(ifindex), name))
		return kDadTransmits;
	return dad_transmits_of(
		Sysctl(sysctl_root)
			.try_read("net/ipv6/conf/" + std::string(name) + "/dad_transmits"));
}

DadProber::DadProber(int ifindex, const Ipv6Addr &target, int transmits, int retrans_ms)
	: sock_(nd_socket(ifindex, true))
	, ifindex_(ifindex)
	, target_(target)
	, transmits_(transmits)
	, retrans_ms_(retrans_ms)
	, group_(ifindex, solicited_node(target))
{
	if (::getrandom(nonce_.data(), nonce_.size(), 0) != static_cast<ssize_t>(nonce_.size()))
		throw_errno("getrandom", "DAD nonce");
}

int DadProber::wait_ms() const
{
	if (done_ || !sent_)
		return 0;
	const auto until = last_sent_ + std::chrono::milliseconds(retrans_ms_);
	const auto ms =
		std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()).count();
	return static_cast<int>(std::max<int64_t>(ms, 0));
}

bool DadProber::step()
{
	if (done_)
		return true;
	if (!sent_ && !link_has_carrier(ifindex_)) {
		done_ = no_carrier_ = true;
		return true;
	}
	for (;;) {
		uint8_t buf[256];
		sockaddr_ll from{};
		socklen_t fl = sizeof(from);
		ssize_t n = ::recvfrom(sock_.get(), buf, sizeof(buf), MSG_DONTWAIT,
				       reinterpret_cast<sockaddr *>(&from), &fl);
		if (n < 0)
			break; // EAGAIN: nothing more now
		if (from.sll_pkttype == PACKET_OUTGOING || from.sll_ifindex != ifindex_)
			continue;
		if (dad_check(buf, static_cast<size_t>(n), target_, nonce_) == DadSeen::Duplicate) {
			MacAddr other{};
			std::memcpy(other.data(), from.sll_addr, 6);
			duplicate_ = other;
			done_ = true;
			return true;
		}
	}
	const auto now = Clock::now();
	if (sent_ && now < last_sent_ + std::chrono::milliseconds(retrans_ms_))
		return false;
	if (sent_ >= transmits_) {
		// Nothing heard: free, unless the link was dead meanwhile.
		done_ = true;
		no_carrier_ = !link_has_carrier(ifindex_);
		return true;
	}
	send_ip6(sock_.get(), ifindex_, build_dad_ns(target_, nonce_), solicited_node(target_));
	sent_++;
	last_sent_ = now;
	return false;
}

std::optional<DadVerdict> dad_probe(int ifindex, const Ipv6Addr &target, MacAddr *other)
{
	DadProber probe(ifindex, target, uplink_dad_transmits(ifindex));
	while (!probe.step()) {
		pollfd pfd{probe.fd(), POLLIN, 0};
		::poll(&pfd, 1, std::max(probe.wait_ms(), 1));
	}
	if (probe.no_carrier())
		return std::nullopt;
	if (!probe.duplicate())
		return DadVerdict::Free;
	if (other)
		*other = *probe.duplicate();
	return DadVerdict::Duplicate;
}

void nd_announce(int ifindex, const Ipv6Addr &target, int count)
{
	Fd s = nd_socket(ifindex, false);
	// The device's MAC: what the kernel puts as the frame's source.
	sockaddr_ll me{};
	socklen_t ml = sizeof(me);
	if (::getsockname(s.get(), reinterpret_cast<sockaddr *>(&me), &ml) < 0 || me.sll_halen != 6)
		throw_errno("read the address of", "ifindex " + std::to_string(ifindex));
	MacAddr mac{};
	std::memcpy(mac.data(), me.sll_addr, 6);
	const Ipv6Addr all_nodes{0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01};
	const auto na = build_unsolicited_na(target, mac);
	for (int i = 0; i < count; i++) {
		if (i)
			::usleep(100 * 1000);
		send_ip6(s.get(), ifindex, na, all_nodes);
	}
}

void send_dad_probe(int ifindex, const Ipv6Addr &target)
{
	DadNonce nonce{};
	if (::getrandom(nonce.data(), nonce.size(), 0) != static_cast<ssize_t>(nonce.size()))
		throw_errno("getrandom", "DAD nonce");
	Fd s = nd_socket(ifindex, false);
	send_ip6(s.get(), ifindex, build_dad_ns(target, nonce), solicited_node(target));
}

void solicit_routers(int ifindex)
{
	Fd s(::socket(AF_INET6, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMPV6));
	if (!s)
		throw_errno("open", "an ICMPv6 socket for a router solicitation");
	// Hop limit 255 (6.1.1: a router discards one that crossed a router);
	// the kernel computes the ICMPv6 checksum and picks the link-local
	// source (:: while it is tentative, so no source link-layer option).
	const int hops = 255;
	if (::setsockopt(s.get(), IPPROTO_IPV6, IPV6_MULTICAST_HOPS, &hops, sizeof(hops)) < 0 ||
	    ::setsockopt(s.get(), IPPROTO_IPV6, IPV6_MULTICAST_IF, &ifindex, sizeof(ifindex)) < 0)
		throw_errno("set up",
			    "a router solicitation on ifindex " + std::to_string(ifindex));
	const uint8_t rs[8] = {133, 0, 0, 0, 0, 0, 0, 0};
	sockaddr_in6 to{};
	to.sin6_family = AF_INET6;
	to.sin6_scope_id = static_cast<uint32_t>(ifindex);
	const uint8_t all_routers[16] = {0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02};
	std::memcpy(&to.sin6_addr, all_routers, sizeof(all_routers));
	if (::sendto(s.get(), rs, sizeof(rs), 0, reinterpret_cast<sockaddr *>(&to), sizeof(to)) < 0)
		throw_errno("send a router solicitation on", "ifindex " + std::to_string(ifindex));
}

void NdGroups::set(int ifindex, const std::set<Ipv6Addr> &addrs)
{
	std::set<Ipv6Addr> want;
	if (ifindex > 0)
		for (const auto &a : addrs)
			want.insert(solicited_node(a));
	if (ifindex != ifindex_) {
		joined_.clear();
		ifindex_ = ifindex;
	}
	for (auto it = joined_.begin(); it != joined_.end();)
		it = want.count(it->first) ? std::next(it) : joined_.erase(it);
	for (const auto &g : want)
		if (!joined_.count(g))
			joined_[g] = std::make_unique<GroupJoin>(ifindex_, g);
}

} // namespace kvmxdp
