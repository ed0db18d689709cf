// SPDX-License-Identifier: GPL-2.0
// Duplicate address detection (RFC 4862 5.4) for the IPv6 addresses of
// static mappings that are not the uplink's own (1:1, forwards on a literal
// address): the datapath answers Neighbour Solicitations for such an
// address (kvx_extaddr6) only after the daemon's DAD found it free, as
// IPv4's mapped addresses are ARP-probed (RFC 5227) before they are
// answered.  The messages as bytes, what a received one means, and the
// address's state from what the map holds and what DAD found (pure:
// unit-tested); the socket is kernel/nd.hpp's, the loop the daemon's.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/netaddr.hpp"
#include "base/netaddr6.hpp"

namespace kvmxdp {

// RFC 7527's nonce option (RFC 3971 5.3.2): a node tells its own looped-back
// probe (a WiFi access point reflects multicast to its sender) from another
// node's probe for the same address.
using DadNonce = std::array<uint8_t, 6>;

// RFC 4862 5.1: DupAddrDetectTransmits 1, RetransTimer 1 s (RFC 4861 10).
constexpr int kDadTransmits = 1;
constexpr int kDadRetransMs = 1000;
// The most probes one DAD sends, whatever the sysctl says: each costs a
// RetransTimer during which the address is held (not answered for).
constexpr int kDadTransmitsMax = 10;
// DupAddrDetectTransmits as the uplink's net.ipv6.conf.IF.dad_transmits
// says (the count the kernel uses for the host's own addresses on that
// link; read, never written): 0 is no DAD (RFC 4862 5.4: the address is
// unique at once); unreadable or not a number: kDadTransmits; capped at
// kDadTransmitsMax.
int dad_transmits_of(const std::optional<std::string> &sysctl);
// After a duplicate, DAD runs again after kDadRetryMinMs, doubling up to
// kDadRetryMaxMs while the address stays taken (the daemon's ARP probes of
// IPv4's suspended addresses back off alike): a phone that holds the
// address for a while costs one probe a minute.
constexpr int kDadRetryMinMs = 5000;
constexpr int kDadRetryMaxMs = 60000;
// The wait before the next DAD after `conflicts` duplicates in a row (>= 1).
int dad_retry_ms(int conflicts);

// The uplink as duplicate address detection sees it: the device, whether
// it has carrier (IFF_UP and IFF_RUNNING: a cable, an associated and
// authenticated WiFi station), and
// the network it is on ("" while it has no address: a WiFi reconnecting).
struct DadLink {
	int ifindex = 0;
	bool carrier = false;
	std::string network;
};
// Follows the uplink (state: what it was, none at first) and says whether
// the announced addresses must go through DAD again (RFC 4862 5.4: DAD
// runs whenever an interface is initialized; Linux reruns it on its own
// addresses when carrier returns): the link got carrier back, or it is
// another device, or another network.  The first look is no change; no
// carrier is none yet (DAD waits for it); a network that reads "" keeps
// the last one known (no address for a moment is no new network).
bool dad_link_update(std::optional<DadLink> &state, DadLink now);

// ff02::1:ffXX:XXXX, the solicited-node group of a (RFC 4291 2.7.1).
Ipv6Addr solicited_node(const Ipv6Addr &a);
// The Ethernet address of an IPv6 multicast group (RFC 2464 7).
MacAddr ipv6_multicast_mac(const Ipv6Addr &group);

// The DAD probe as an IPv6 packet (fixed header first, no Ethernet header):
// a Neighbour Solicitation for target from :: to its solicited-node group,
// hop limit 255, no source link-layer option (RFC 4861 7.2.2 forbids one
// from ::), the nonce option; checksum computed.
std::vector<uint8_t> build_dad_ns(const Ipv6Addr &target, const DadNonce &nonce);
// The unsolicited Neighbour Advertisement that announces target at mac
// once DAD found it free (RFC 4861 7.2.6, as IPv4's gratuitous ARP): to
// all nodes (ff02::1), from target, Override set, the target link-layer
// address option; checksum computed.
std::vector<uint8_t> build_unsolicited_na(const Ipv6Addr &target, const MacAddr &mac);

enum class DadSeen {
	Nothing,   // not about target, ours, or not a valid ND message
	Duplicate, // another node has or claims target
};
// What a received IPv6 packet (fixed header first) means for the DAD of
// target (RFC 4862 5.4.3, 5.4.4): a valid Neighbour Advertisement for it,
// or another node's DAD probe for it (from ::, a nonce not ours), is a
// duplicate.  Valid as RFC 4861 7.1 says: hop limit 255, code 0, the
// ICMPv6 checksum right, no extension headers, the length of the message.
DadSeen dad_check(const uint8_t *pkt, size_t len, const Ipv6Addr &target, const DadNonce &ours);

enum class DadVerdict { Free, Duplicate };

// A mapped address's state in kvx_extaddr6 (KVX_EXT_F_*), from what the
// map holds now (none: a new address) and the verdict of a DAD that ran
// since (none: no DAD finished): a new address is probed (PROBING) before
// it is answered for; Free announces it (ARP: the datapath answers
// Neighbour Solicitations; announce_now: send the unsolicited NA);
// Duplicate holds it (CONFLICT, retried); an announced address stays so
// (its DAD was done, a LAN host's later DAD is defended).  held: its
// mappings get no pairs in kvx_bind6 (not translated: its traffic may be
// another node's).
struct Ext6State {
	uint32_t flags = 0;
	bool held = false;
	bool announce_now = false;
};
Ext6State decide_ext6(std::optional<uint32_t> have, std::optional<DadVerdict> verdict);

} // namespace kvmxdp
