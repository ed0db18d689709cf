// Packet builder, parser and independent checksum code for the BPF tests
// (and, later, the fuzzers).  Nothing here shares code with the datapath:
// checksums are recomputed from scratch over the whole packet (RFC 1071),
// never incrementally, so a wrong incremental update (RFC 1624) in the BPF
// code cannot be mirrored by a wrong expectation here.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace kvmxdp::testpkt {

using Bytes = std::vector<std::uint8_t>;
using Mac = std::array<std::uint8_t, 6>;

// IPv4 addresses are kept in host order in the builder; the wire and the
// BPF maps use network order (to_be32/from_be32 below).
constexpr std::uint32_t ip4(unsigned a, unsigned b, unsigned c, unsigned d)
{
	return (a << 24) | (b << 16) | (c << 8) | d;
}
std::string ip4_str(std::uint32_t host_order);
std::string mac_str(const Mac &mac);

constexpr std::uint16_t kEthIpv4 = 0x0800;
constexpr std::uint16_t kEthArp = 0x0806;
constexpr std::uint16_t kEthIpv6 = 0x86dd;
constexpr std::uint16_t kEthVlan = 0x8100;

constexpr std::uint8_t kProtoIcmp = 1;
constexpr std::uint8_t kProtoTcp = 6;
constexpr std::uint8_t kProtoUdp = 17;
constexpr std::uint8_t kProtoGre = 47;

constexpr std::uint8_t kTcpFin = 0x01;
constexpr std::uint8_t kTcpSyn = 0x02;
constexpr std::uint8_t kTcpRst = 0x04;
constexpr std::uint8_t kTcpPsh = 0x08;
constexpr std::uint8_t kTcpAck = 0x10;

constexpr std::uint8_t kIcmpEchoReply = 0;
constexpr std::uint8_t kIcmpDestUnreach = 3;
constexpr std::uint8_t kIcmpEchoRequest = 8;
constexpr std::uint8_t kIcmpTimeExceeded = 11;

// Description of one Ethernet frame.  build() serialises it with every
// length and checksum computed, unless an override says otherwise (for
// malformed packets).
struct Packet {
	// Ethernet
	Mac dst_mac{};
	Mac src_mac{};
	std::vector<std::uint16_t> vlan_tags; // 802.1Q TCIs, outermost first
	std::uint16_t ethertype = kEthIpv4;

	// IPv4 (when ethertype == kEthIpv4)
	std::uint8_t tos = 0;
	std::uint16_t ip_id = 0x4d2b;
	bool df = true;
	bool mf = false;
	std::uint16_t frag_offset = 0; // in 8-byte units
	std::uint8_t ttl = 64;
	std::uint8_t proto = kProtoTcp;
	std::uint32_t src = 0; // host order
	std::uint32_t dst = 0; // host order
	Bytes ip_options;      // must be a multiple of 4 bytes

	// TCP/UDP
	std::uint16_t sport = 0;
	std::uint16_t dport = 0;
	// TCP
	std::uint32_t seq = 0x01020304;
	std::uint32_t ack_seq = 0;
	std::uint8_t tcp_flags = kTcpSyn;
	std::uint16_t window = 64240;
	Bytes tcp_options; // must be a multiple of 4 bytes
	// UDP: RFC 768 "no checksum" (the field is 0)
	bool udp_no_csum = false;
	// ICMP (echo layout: type, code, csum, id, seq)
	std::uint8_t icmp_type = kIcmpEchoRequest;
	std::uint8_t icmp_code = 0;
	std::uint16_t icmp_id = 0;
	std::uint16_t icmp_seq = 1;

	// Serialise payload as the whole IP payload whatever proto says (for
	// truncated L4 headers with a consistent tot_len).
	bool raw_l4 = false;
	// L4 payload; for protocols other than TCP/UDP/ICMP the whole IP payload;
	// for non-IPv4 ethertypes everything after the Ethernet header.
	Bytes payload;
	// Zero-pad the frame to at least this many bytes (Ethernet minimum: 60).
	std::size_t pad_to = 0;

	// Overrides for malformed packets.
	std::optional<std::uint8_t> version;
	std::optional<std::uint8_t> ihl;
	std::optional<std::uint16_t> tot_len;
	std::optional<std::uint16_t> ip_csum;
	std::optional<std::uint16_t> l4_csum;

	Bytes build() const;
};

// Factories with the fields a test usually varies; everything else keeps
// the defaults above.
Packet make_tcp(std::uint32_t src, std::uint16_t sport, std::uint32_t dst, std::uint16_t dport,
		std::uint8_t flags = kTcpSyn);
Packet make_udp(std::uint32_t src, std::uint16_t sport, std::uint32_t dst, std::uint16_t dport,
		std::size_t payload_len = 16);
Packet make_icmp_echo(std::uint32_t src, std::uint32_t dst, std::uint16_t id,
		      std::uint8_t type = kIcmpEchoRequest);
Packet make_ip_proto(std::uint32_t src, std::uint32_t dst, std::uint8_t proto,
		     std::size_t payload_len = 24);
Packet make_ethertype(std::uint16_t ethertype, std::size_t payload_len = 46);
// An ICMP error (RFC 792) quoting the first quote_len bytes of the IPv4
// datagram in frame (its Ethernet header stripped); mtu is the next-hop MTU
// of a fragmentation-needed message (type 3 code 4).
Packet make_icmp_error(std::uint32_t src, std::uint32_t dst, std::uint8_t type, std::uint8_t code,
		       const Bytes &frame, std::size_t quote_len = 576 - 28, std::uint16_t mtu = 0);
// Deterministic, non-trivial payload bytes (so checksums are not all zero).
Bytes pattern(std::size_t len, std::uint8_t seed = 0x5a);
// TCP options with the timestamp option (RFC 7323) as Linux lays them out:
// on a SYN after MSS and SACK-permitted, the window scale after it (the
// option not 4-byte aligned there); on any other segment after two NOPs.
Bytes tcp_ts_options(std::uint32_t tsval, std::uint32_t tsecr, bool syn);

// RFC 1071 Internet checksum.
std::uint32_t csum_partial(const std::uint8_t *data, std::size_t len, std::uint32_t sum = 0);
std::uint16_t csum_fold(std::uint32_t sum); // ~(folded sum), ready to store
std::uint16_t inet_checksum(const std::uint8_t *data, std::size_t len);
// TCP/UDP checksum over the IPv4 pseudo-header and the whole segment (with
// its checksum field as it is: 0 when computing, the stored value when
// verifying).
std::uint16_t l4_checksum(std::uint32_t src, std::uint32_t dst, std::uint8_t proto,
			  const std::uint8_t *seg, std::size_t len);

// What a test needs to know about a frame it got back.
struct Parsed {
	Mac dst_mac{};
	Mac src_mac{};
	std::uint16_t ethertype = 0; // after any VLAN tags
	std::size_t l3_off = 0;
	bool ipv4 = false; // a complete IPv4 header and tot_len inside the frame
	std::size_t ihl_bytes = 0;
	std::uint16_t tot_len = 0;
	std::uint8_t ttl = 0;
	std::uint8_t proto = 0;
	bool fragment = false;	     // MF or offset: the L4 checksum cannot be verified
	bool later_fragment = false; // offset != 0: no L4 header
	std::uint32_t src = 0;	     // host order
	std::uint32_t dst = 0;	     // host order
	std::size_t l4_off = 0;
	bool l4_complete = false; // the TCP/UDP/ICMP header is inside tot_len
	std::uint16_t sport = 0;  // TCP/UDP
	std::uint16_t dport = 0;
	std::uint16_t l4_csum = 0; // TCP/UDP/ICMP checksum field as stored
	std::uint8_t icmp_type = 0;
	std::uint16_t icmp_id = 0;
};
Parsed parse(const Bytes &frame);

// Verifies every checksum of an IPv4 frame from scratch (IP header; TCP and
// UDP with the pseudo-header; ICMP over the message; UDP 0 = none is
// accepted, and a UDP checksum that computes to 0 must be sent as 0xffff).
// Returns "" if all are valid, else a description of what is wrong.
std::string check_checksums(const Bytes &frame);

// IPv6 (RFC 8200).  Addresses as 16 bytes in network order.
using Ip6 = std::array<std::uint8_t, 16>;
// "2001:db8::1" -> bytes; throws std::invalid_argument on a bad literal.
Ip6 ip6(const char *text);
std::string ip6_str(const Ip6 &a);

constexpr std::uint8_t kProtoIcmp6 = 58;
constexpr std::uint8_t kExtHopByHop = 0;
constexpr std::uint8_t kExtRouting = 43;
constexpr std::uint8_t kExtFragment = 44;
constexpr std::uint8_t kExtEsp = 50;
constexpr std::uint8_t kExtAh = 51;
constexpr std::uint8_t kExtDstOpts = 60;
constexpr std::uint8_t kIcmp6EchoRequest = 128;
constexpr std::uint8_t kIcmp6EchoReply = 129;
constexpr std::uint8_t kIcmp6RouterSol = 133;
constexpr std::uint8_t kIcmp6NeighSol = 135;
constexpr std::uint8_t kIcmp6PacketTooBig = 2;

// One extension header: its type and its bytes after the next-header and
// length bytes (which build() fills in; the Fragment header's second byte
// is reserved and stays 0).  (2 + rest.size()) must be a multiple of 8.
struct ExtHdr {
	std::uint8_t type = kExtDstOpts;
	Bytes rest;
};
// Hop-by-hop / destination options of total length len (a multiple of 8),
// padded with a PadN option.
ExtHdr ext_options(std::uint8_t type, std::size_t len = 8);
// A type 4 (segment routing) style routing header with segments_left.
ExtHdr ext_routing(std::uint8_t segments_left, std::size_t len = 24);
ExtHdr ext_fragment(std::uint16_t offset_units, bool more, std::uint32_t id = 0x1234);

// An IPv6 frame; L4 as Packet's (TCP, UDP, ICMPv6 with the echo layout,
// or proto's raw payload).  build() computes every length and checksum
// from scratch (the pseudo-header of RFC 8200 8.1 for TCP, UDP and ICMPv6)
// unless an override says otherwise.
struct Packet6 {
	Mac dst_mac{};
	Mac src_mac{};
	std::uint8_t traffic_class = 0;
	std::uint32_t flow_label = 0;
	std::uint8_t hop_limit = 64;
	std::uint8_t proto = kProtoTcp; // the final next header
	Ip6 src{};
	Ip6 dst{};
	std::vector<ExtHdr> ext;

	std::uint16_t sport = 0;
	std::uint16_t dport = 0;
	std::uint32_t seq = 0x01020304;
	std::uint32_t ack_seq = 0;
	std::uint8_t tcp_flags = kTcpSyn;
	std::uint16_t window = 64240;
	Bytes tcp_options;
	bool udp_no_csum = false;
	std::uint8_t icmp_type = kIcmp6EchoRequest;
	std::uint8_t icmp_code = 0;
	std::uint16_t icmp_id = 0;
	std::uint16_t icmp_seq = 1;
	Bytes payload;

	std::optional<std::uint16_t> payload_len;
	std::optional<std::uint16_t> l4_csum;

	Bytes build() const;
};

Packet6 make_tcp6(const Ip6 &src, std::uint16_t sport, const Ip6 &dst, std::uint16_t dport,
		  std::uint8_t flags = kTcpSyn);
Packet6 make_udp6(const Ip6 &src, std::uint16_t sport, const Ip6 &dst, std::uint16_t dport,
		  std::size_t payload_len = 16);
Packet6 make_echo6(const Ip6 &src, const Ip6 &dst, std::uint16_t id,
		   std::uint8_t type = kIcmp6EchoRequest);

// TCP/UDP/ICMPv6 checksum over the IPv6 pseudo-header and the segment.
std::uint16_t l4_checksum6(const Ip6 &src, const Ip6 &dst, std::uint8_t proto,
			   const std::uint8_t *seg, std::size_t len);

// What a test needs to know about an IPv6 frame, found by walking its
// header chain independently of the datapath.
struct Parsed6 {
	bool ipv6 = false;     // a complete fixed header, payload inside the frame
	bool chain_ok = false; // every extension header inside the payload
	std::uint8_t hop_limit = 0;
	std::uint8_t proto = 0; // the final next header
	Ip6 src{};
	Ip6 dst{};
	std::size_t l4_off = 0;
	std::size_t ip_end = 0;
	bool fragment = false;
	std::uint16_t sport = 0; // TCP/UDP; ICMPv6 echo: the identifier
	std::uint16_t dport = 0;
	std::uint8_t icmp_type = 0;
};
Parsed6 parse6(const Bytes &frame);

// Human-readable difference of two frames ("" if equal).
std::string diff(const Bytes &got, const Bytes &want);
std::string hex(const Bytes &frame);

} // namespace kvmxdp::testpkt
