#include "pkt.hpp"

#include <arpa/inet.h>

#include <cstdio>
#include <sstream>
#include <stdexcept>

namespace kvmxdp::testpkt {
namespace {

void put8(Bytes &b, std::size_t off, std::uint8_t v)
{
	b.at(off) = v;
}

void put16(Bytes &b, std::size_t off, std::uint16_t v)
{
	b.at(off) = static_cast<std::uint8_t>(v >> 8);
	b.at(off + 1) = static_cast<std::uint8_t>(v);
}

void put32(Bytes &b, std::size_t off, std::uint32_t v)
{
	put16(b, off, static_cast<std::uint16_t>(v >> 16));
	put16(b, off + 2, static_cast<std::uint16_t>(v));
}

std::uint16_t get16(const Bytes &b, std::size_t off)
{
	return static_cast<std::uint16_t>((b.at(off) << 8) | b.at(off + 1));
}

std::uint32_t get32(const Bytes &b, std::size_t off)
{
	return (static_cast<std::uint32_t>(get16(b, off)) << 16) | get16(b, off + 2);
}

void append(Bytes &b, const Bytes &more)
{
	b.insert(b.end(), more.begin(), more.end());
}

// The L4 part of an IPv4 packet, checksum left 0 (filled by build()).
Bytes build_l4(const Packet &p)
{
	Bytes l4;
	switch (p.raw_l4 ? 0 : p.proto) {
	case kProtoTcp: {
		if (p.tcp_options.size() % 4 != 0)
			throw std::invalid_argument("tcp_options not a multiple of 4");
		std::size_t hlen = 20 + p.tcp_options.size();
		l4.assign(hlen, 0);
		put16(l4, 0, p.sport);
		put16(l4, 2, p.dport);
		put32(l4, 4, p.seq);
		put32(l4, 8, p.ack_seq);
		put8(l4, 12, static_cast<std::uint8_t>((hlen / 4) << 4));
		put8(l4, 13, p.tcp_flags);
		put16(l4, 14, p.window);
		std::copy(p.tcp_options.begin(), p.tcp_options.end(), l4.begin() + 20);
		break;
	}
	case kProtoUdp:
		l4.assign(8, 0);
		put16(l4, 0, p.sport);
		put16(l4, 2, p.dport);
		put16(l4, 4, static_cast<std::uint16_t>(8 + p.payload.size()));
		break;
	case kProtoIcmp:
		l4.assign(8, 0);
		put8(l4, 0, p.icmp_type);
		put8(l4, 1, p.icmp_code);
		put16(l4, 4, p.icmp_id);
		put16(l4, 6, p.icmp_seq);
		break;
	default:
		break;
	}
	append(l4, p.payload);
	return l4;
}

} // namespace

std::string ip4_str(std::uint32_t a)
{
	char buf[32];
	std::snprintf(buf, sizeof(buf), "%u.%u.%u.%u", a >> 24, (a >> 16) & 0xff, (a >> 8) & 0xff,
		      a & 0xff);
	return buf;
}

std::string mac_str(const Mac &m)
{
	char buf[32];
	std::snprintf(buf, sizeof(buf), "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3],
		      m[4], m[5]);
	return buf;
}

std::uint32_t csum_partial(const std::uint8_t *data, std::size_t len, std::uint32_t sum)
{
	// RFC 1071: sum of 16-bit big-endian words, an odd last byte padded
	// with zero; carries are folded by csum_fold.  64-bit accumulator so
	// no carry is lost on any length the tests use.
	std::uint64_t acc = sum;
	std::size_t i = 0;
	for (; i + 1 < len; i += 2)
		acc += static_cast<std::uint32_t>((data[i] << 8) | data[i + 1]);
	if (i < len)
		acc += static_cast<std::uint32_t>(data[i] << 8);
	while (acc >> 32)
		acc = (acc & 0xffffffffu) + (acc >> 32);
	return static_cast<std::uint32_t>(acc);
}

std::uint16_t csum_fold(std::uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return static_cast<std::uint16_t>(~sum & 0xffff);
}

std::uint16_t inet_checksum(const std::uint8_t *data, std::size_t len)
{
	return csum_fold(csum_partial(data, len));
}

std::uint16_t l4_checksum(std::uint32_t src, std::uint32_t dst, std::uint8_t proto,
			  const std::uint8_t *seg, std::size_t len)
{
	Bytes pseudo(12, 0);
	put32(pseudo, 0, src);
	put32(pseudo, 4, dst);
	put8(pseudo, 9, proto);
	put16(pseudo, 10, static_cast<std::uint16_t>(len));
	std::uint32_t sum = csum_partial(pseudo.data(), pseudo.size());
	return csum_fold(csum_partial(seg, len, sum));
}

Bytes Packet::build() const
{
	Bytes f(12, 0);
	std::copy(dst_mac.begin(), dst_mac.end(), f.begin());
	std::copy(src_mac.begin(), src_mac.end(), f.begin() + 6);
	for (std::uint16_t tci : vlan_tags) {
		f.push_back(kEthVlan >> 8);
		f.push_back(kEthVlan & 0xff);
		f.push_back(static_cast<std::uint8_t>(tci >> 8));
		f.push_back(static_cast<std::uint8_t>(tci));
	}
	f.push_back(static_cast<std::uint8_t>(ethertype >> 8));
	f.push_back(static_cast<std::uint8_t>(ethertype));

	if (ethertype != kEthIpv4) {
		append(f, payload);
	} else {
		if (ip_options.size() % 4 != 0 || ip_options.size() > 40)
			throw std::invalid_argument("bad ip_options length");
		std::size_t hlen = 20 + ip_options.size();
		Bytes ip(hlen, 0);
		Bytes l4 = build_l4(*this);
		std::uint16_t total = static_cast<std::uint16_t>(hlen + l4.size());
		put8(ip, 0,
		     static_cast<std::uint8_t>((version.value_or(4) << 4) |
					       ihl.value_or(static_cast<std::uint8_t>(hlen / 4))));
		put8(ip, 1, tos);
		put16(ip, 2, tot_len.value_or(total));
		put16(ip, 4, ip_id);
		put16(ip, 6,
		      static_cast<std::uint16_t>((df ? 0x4000 : 0) | (mf ? 0x2000 : 0) |
						 (frag_offset & 0x1fff)));
		put8(ip, 8, ttl);
		put8(ip, 9, proto);
		put32(ip, 12, src);
		put32(ip, 16, dst);
		std::copy(ip_options.begin(), ip_options.end(), ip.begin() + 20);
		put16(ip, 10, ip_csum.value_or(inet_checksum(ip.data(), ip.size())));

		// L4 checksums are computed on the real segment even when the IP
		// header lies about lengths, so only the override breaks them.
		std::uint16_t c = 0;
		switch (raw_l4 ? 0 : proto) {
		case kProtoTcp:
			c = l4_checksum(src, dst, proto, l4.data(), l4.size());
			put16(l4, 16, l4_csum.value_or(c));
			break;
		case kProtoUdp:
			c = l4_checksum(src, dst, proto, l4.data(), l4.size());
			if (c == 0)
				c = 0xffff; // RFC 768: computed 0 is sent as all ones
			put16(l4, 6, l4_csum.value_or(udp_no_csum ? 0 : c));
			break;
		case kProtoIcmp:
			c = inet_checksum(l4.data(), l4.size());
			put16(l4, 2, l4_csum.value_or(c));
			break;
		default:
			break;
		}
		append(f, ip);
		append(f, l4);
	}
	if (f.size() < pad_to)
		f.resize(pad_to, 0);
	return f;
}

Bytes tcp_ts_options(std::uint32_t tsval, std::uint32_t tsecr, bool syn)
{
	Bytes b = syn ? Bytes{2, 4, 0x05, 0xb4, 4, 2} : Bytes{1, 1};
	b.insert(b.end(), {8, 10});
	for (std::uint32_t v : {tsval, tsecr})
		for (int shift = 24; shift >= 0; shift -= 8)
			b.push_back(static_cast<std::uint8_t>(v >> shift));
	if (syn)
		b.insert(b.end(), {1, 3, 3, 7});
	return b;
}

Bytes pattern(std::size_t len, std::uint8_t seed)
{
	Bytes b(len);
	std::uint8_t x = seed;
	for (std::size_t i = 0; i < len; i++) {
		x = static_cast<std::uint8_t>(x * 29 + 17 + i);
		b[i] = x;
	}
	return b;
}

Packet make_tcp(std::uint32_t src, std::uint16_t sport, std::uint32_t dst, std::uint16_t dport,
		std::uint8_t flags)
{
	Packet p;
	p.proto = kProtoTcp;
	p.src = src;
	p.sport = sport;
	p.dst = dst;
	p.dport = dport;
	p.tcp_flags = flags;
	if (flags & kTcpSyn)
		p.tcp_options = {0x02, 0x04, 0x05, 0xb4}; // MSS 1460
	else
		p.payload = pattern(32, 0x11);
	return p;
}

Packet make_udp(std::uint32_t src, std::uint16_t sport, std::uint32_t dst, std::uint16_t dport,
		std::size_t payload_len)
{
	Packet p;
	p.proto = kProtoUdp;
	p.src = src;
	p.sport = sport;
	p.dst = dst;
	p.dport = dport;
	p.payload = pattern(payload_len, 0x22);
	return p;
}

Packet make_icmp_echo(std::uint32_t src, std::uint32_t dst, std::uint16_t id, std::uint8_t type)
{
	Packet p;
	p.proto = kProtoIcmp;
	p.src = src;
	p.dst = dst;
	p.icmp_type = type;
	p.icmp_id = id;
	p.icmp_seq = 7;
	p.payload = pattern(56, 0x33);
	return p;
}

Packet make_ip_proto(std::uint32_t src, std::uint32_t dst, std::uint8_t proto,
		     std::size_t payload_len)
{
	Packet p;
	p.proto = proto;
	p.src = src;
	p.dst = dst;
	p.payload = pattern(payload_len, 0x44);
	return p;
}

Packet make_ethertype(std::uint16_t ethertype, std::size_t payload_len)
{
	Packet p;
	p.ethertype = ethertype;
	p.payload = pattern(payload_len, 0x55);
	return p;
}

Packet make_icmp_error(std::uint32_t src, std::uint32_t dst, std::uint8_t type, std::uint8_t code,
		       const Bytes &frame, std::size_t quote_len, std::uint16_t mtu)
{
	Packet p;
	p.proto = kProtoIcmp;
	p.src = src;
	p.dst = dst;
	p.df = false;
	p.icmp_type = type;
	p.icmp_code = code;
	p.icmp_id = 0;	  // unused
	p.icmp_seq = mtu; // next-hop MTU (RFC 1191), else unused
	const std::size_t l3 = parse(frame).l3_off;
	const std::size_t end = std::min(frame.size(), l3 + quote_len);
	p.payload.assign(frame.begin() + static_cast<long>(l3),
			 frame.begin() + static_cast<long>(end));
	return p;
}

Parsed parse(const Bytes &f)
{
	Parsed r;
	if (f.size() < 14)
		return r;
	std::copy(f.begin(), f.begin() + 6, r.dst_mac.begin());
	std::copy(f.begin() + 6, f.begin() + 12, r.src_mac.begin());
	std::size_t off = 12;
	r.ethertype = get16(f, off);
	while (r.ethertype == kEthVlan && f.size() >= off + 8) {
		off += 4;
		r.ethertype = get16(f, off);
	}
	r.l3_off = off + 2;
	if (r.ethertype != kEthIpv4 || f.size() < r.l3_off + 20)
		return r;
	const std::size_t l3 = r.l3_off;
	std::uint8_t vihl = f[l3];
	r.ihl_bytes = static_cast<std::size_t>(vihl & 0xf) * 4;
	r.tot_len = get16(f, l3 + 2);
	if ((vihl >> 4) != 4 || r.ihl_bytes < 20 || r.tot_len < r.ihl_bytes ||
	    l3 + r.tot_len > f.size())
		return r;
	r.ipv4 = true;
	r.ttl = f[l3 + 8];
	r.proto = f[l3 + 9];
	r.fragment = (get16(f, l3 + 6) & 0x3fff) != 0;
	r.later_fragment = (get16(f, l3 + 6) & 0x1fff) != 0;
	r.src = get32(f, l3 + 12);
	r.dst = get32(f, l3 + 16);
	r.l4_off = l3 + r.ihl_bytes;
	const std::size_t l4_len = r.tot_len - r.ihl_bytes;
	if (r.later_fragment)
		return r;
	switch (r.proto) {
	case kProtoTcp:
		if (l4_len >= 20) {
			r.l4_complete = true;
			r.sport = get16(f, r.l4_off);
			r.dport = get16(f, r.l4_off + 2);
			r.l4_csum = get16(f, r.l4_off + 16);
		}
		break;
	case kProtoUdp:
		if (l4_len >= 8) {
			r.l4_complete = true;
			r.sport = get16(f, r.l4_off);
			r.dport = get16(f, r.l4_off + 2);
			r.l4_csum = get16(f, r.l4_off + 6);
		}
		break;
	case kProtoIcmp:
		if (l4_len >= 8) {
			r.l4_complete = true;
			r.icmp_type = f[r.l4_off];
			r.l4_csum = get16(f, r.l4_off + 2);
			r.icmp_id = get16(f, r.l4_off + 4);
		}
		break;
	default:
		break;
	}
	return r;
}

namespace {

std::string check_checksums6(const Bytes &f)
{
	const Parsed6 p = parse6(f);
	if (!p.ipv6 || !p.chain_ok)
		return "not a complete IPv6 packet";
	if (p.fragment || p.l4_off > p.ip_end)
		return "";
	std::ostringstream err;
	const std::uint8_t *l4 = f.data() + p.l4_off;
	const std::size_t l4_len = p.ip_end - p.l4_off;
	switch (p.proto) {
	case kProtoTcp:
	case kProtoIcmp6:
		if (l4_len >= (p.proto == kProtoTcp ? 20u : 4u) &&
		    l4_checksum6(p.src, p.dst, p.proto, l4, l4_len) != 0)
			err << (p.proto == kProtoTcp ? "TCP" : "ICMPv6") << " checksum invalid; ";
		break;
	case kProtoUdp:
		if (l4_len < 8)
			break;
		// RFC 8200 8.1: 0 is no "no checksum" in IPv6.
		if (get16(f, p.l4_off + 6) == 0)
			err << "UDP checksum 0; ";
		else if (l4_checksum6(p.src, p.dst, p.proto, l4, l4_len) != 0)
			err << "UDP checksum invalid; ";
		if (get16(f, p.l4_off + 4) != l4_len)
			err << "UDP length != payload length; ";
		break;
	default:
		break;
	}
	return err.str();
}

} // namespace

std::string check_checksums(const Bytes &f)
{
	Parsed p = parse(f);
	if (p.ethertype == kEthIpv6)
		return check_checksums6(f);
	if (p.ethertype != kEthIpv4)
		return "";
	if (!p.ipv4)
		return "not a complete IPv4 packet";
	std::ostringstream err;
	const std::uint8_t *ip = f.data() + p.l3_off;
	if (inet_checksum(ip, p.ihl_bytes) != 0)
		err << "IPv4 header checksum invalid (stored 0x" << std::hex
		    << get16(f, p.l3_off + 10) << "); ";
	if (p.fragment || !p.l4_complete)
		return err.str();
	const std::uint8_t *l4 = f.data() + p.l4_off;
	const std::size_t l4_len = p.tot_len - p.ihl_bytes;
	switch (p.proto) {
	case kProtoTcp:
		if (l4_checksum(p.src, p.dst, p.proto, l4, l4_len) != 0)
			err << "TCP checksum invalid (stored 0x" << std::hex << p.l4_csum << "); ";
		break;
	case kProtoUdp:
		if (p.l4_csum != 0 && l4_checksum(p.src, p.dst, p.proto, l4, l4_len) != 0)
			err << "UDP checksum invalid (stored 0x" << std::hex << p.l4_csum << "); ";
		if (get16(f, p.l4_off + 4) != l4_len)
			err << "UDP length != IP payload length; ";
		break;
	case kProtoIcmp:
		if (inet_checksum(l4, l4_len) != 0)
			err << "ICMP checksum invalid (stored 0x" << std::hex << p.l4_csum << "); ";
		break;
	default:
		break;
	}
	return err.str();
}

std::string hex(const Bytes &f)
{
	std::ostringstream o;
	char buf[4];
	for (std::size_t i = 0; i < f.size(); i++) {
		std::snprintf(buf, sizeof(buf), "%02x", f[i]);
		o << buf << ((i % 16 == 15) ? "\n" : " ");
	}
	return o.str();
}

std::string diff(const Bytes &got, const Bytes &want)
{
	if (got == want)
		return "";
	std::ostringstream o;
	o << "frames differ (got " << got.size() << " bytes, want " << want.size() << ")";
	const std::size_t n = std::max(got.size(), want.size());
	int shown = 0;
	for (std::size_t i = 0; i < n && shown < 24; i++) {
		int g = i < got.size() ? got[i] : -1;
		int w = i < want.size() ? want[i] : -1;
		if (g == w)
			continue;
		char gs[8] = "--", ws[8] = "--", buf[64];
		if (g >= 0)
			std::snprintf(gs, sizeof(gs), "%02x", g);
		if (w >= 0)
			std::snprintf(ws, sizeof(ws), "%02x", w);
		std::snprintf(buf, sizeof(buf), "\n  byte %zu: got %s want %s", i, gs, ws);
		o << buf;
		shown++;
	}
	// The first 128 bytes hold every header a test looks at.
	auto head = [](const Bytes &b) {
		return b.size() <= 128 ? hex(b) : hex(Bytes(b.begin(), b.begin() + 128)) + "...\n";
	};
	o << "\n got:\n" << head(got) << "\n want:\n" << head(want);
	return o.str();
}

} // namespace kvmxdp::testpkt

namespace kvmxdp::testpkt {

Ip6 ip6(const char *text)
{
	Ip6 a{};
	if (inet_pton(AF_INET6, text, a.data()) != 1)
		throw std::invalid_argument(std::string("bad IPv6 address ") + text);
	return a;
}

std::string ip6_str(const Ip6 &a)
{
	char buf[INET6_ADDRSTRLEN];
	return inet_ntop(AF_INET6, a.data(), buf, sizeof(buf)) ? buf : "?";
}

ExtHdr ext_options(std::uint8_t type, std::size_t len)
{
	if (len < 8 || len % 8 != 0)
		throw std::invalid_argument("option header length");
	ExtHdr h;
	h.type = type;
	h.rest.assign(len - 2, 0);
	h.rest[0] = 1; // PadN
	h.rest[1] = static_cast<std::uint8_t>(len - 4);
	return h;
}

ExtHdr ext_routing(std::uint8_t segments_left, std::size_t len)
{
	if (len < 8 || len % 8 != 0)
		throw std::invalid_argument("routing header length");
	ExtHdr h;
	h.type = kExtRouting;
	h.rest.assign(len - 2, 0);
	h.rest[0] = 4; // routing type (segment routing)
	h.rest[1] = segments_left;
	return h;
}

ExtHdr ext_fragment(std::uint16_t offset_units, bool more, std::uint32_t id)
{
	ExtHdr h;
	h.type = kExtFragment;
	h.rest.assign(6, 0);
	const std::uint16_t fo = static_cast<std::uint16_t>((offset_units << 3) | (more ? 1 : 0));
	h.rest[0] = static_cast<std::uint8_t>(fo >> 8);
	h.rest[1] = static_cast<std::uint8_t>(fo);
	h.rest[2] = static_cast<std::uint8_t>(id >> 24);
	h.rest[3] = static_cast<std::uint8_t>(id >> 16);
	h.rest[4] = static_cast<std::uint8_t>(id >> 8);
	h.rest[5] = static_cast<std::uint8_t>(id);
	return h;
}

std::uint16_t l4_checksum6(const Ip6 &src, const Ip6 &dst, std::uint8_t proto,
			   const std::uint8_t *seg, std::size_t len)
{
	Bytes pseudo(40, 0);
	std::copy(src.begin(), src.end(), pseudo.begin());
	std::copy(dst.begin(), dst.end(), pseudo.begin() + 16);
	put32(pseudo, 32, static_cast<std::uint32_t>(len));
	put8(pseudo, 39, proto);
	std::uint32_t sum = csum_partial(pseudo.data(), pseudo.size());
	return csum_fold(csum_partial(seg, len, sum));
}

Bytes Packet6::build() const
{
	Bytes f(12, 0);
	std::copy(dst_mac.begin(), dst_mac.end(), f.begin());
	std::copy(src_mac.begin(), src_mac.end(), f.begin() + 6);
	f.push_back(kEthIpv6 >> 8);
	f.push_back(kEthIpv6 & 0xff);

	Bytes chain;
	for (std::size_t i = 0; i < ext.size(); i++) {
		const ExtHdr &h = ext[i];
		if ((2 + h.rest.size()) % 8 != 0)
			throw std::invalid_argument("extension header length");
		chain.push_back(i + 1 < ext.size() ? ext[i + 1].type : proto);
		chain.push_back(h.type == kExtFragment ?
					0 :
					static_cast<std::uint8_t>((2 + h.rest.size()) / 8 - 1));
		append(chain, h.rest);
	}
	Packet l4p;
	l4p.proto = proto == kProtoIcmp6 ? kProtoIcmp : proto;
	l4p.sport = sport;
	l4p.dport = dport;
	l4p.seq = seq;
	l4p.ack_seq = ack_seq;
	l4p.tcp_flags = tcp_flags;
	l4p.window = window;
	l4p.tcp_options = tcp_options;
	l4p.icmp_type = icmp_type;
	l4p.icmp_code = icmp_code;
	l4p.icmp_id = icmp_id;
	l4p.icmp_seq = icmp_seq;
	l4p.payload = payload;
	Bytes l4 = build_l4(l4p);
	std::uint16_t c = 0;
	switch (proto) {
	case kProtoTcp:
		c = l4_checksum6(src, dst, proto, l4.data(), l4.size());
		put16(l4, 16, l4_csum.value_or(c));
		break;
	case kProtoUdp:
		c = l4_checksum6(src, dst, proto, l4.data(), l4.size());
		if (c == 0)
			c = 0xffff;
		put16(l4, 6, l4_csum.value_or(udp_no_csum ? 0 : c));
		break;
	case kProtoIcmp6:
		c = l4_checksum6(src, dst, proto, l4.data(), l4.size());
		put16(l4, 2, l4_csum.value_or(c));
		break;
	default:
		break;
	}

	Bytes ip(40, 0);
	put32(ip, 0, (6u << 28) | (std::uint32_t{traffic_class} << 20) | (flow_label & 0xfffff));
	put16(ip, 4, payload_len.value_or(static_cast<std::uint16_t>(chain.size() + l4.size())));
	put8(ip, 6, ext.empty() ? proto : ext[0].type);
	put8(ip, 7, hop_limit);
	std::copy(src.begin(), src.end(), ip.begin() + 8);
	std::copy(dst.begin(), dst.end(), ip.begin() + 24);
	append(f, ip);
	append(f, chain);
	append(f, l4);
	return f;
}

Packet6 make_tcp6(const Ip6 &src, std::uint16_t sport, const Ip6 &dst, std::uint16_t dport,
		  std::uint8_t flags)
{
	Packet6 p;
	p.proto = kProtoTcp;
	p.src = src;
	p.dst = dst;
	p.sport = sport;
	p.dport = dport;
	p.tcp_flags = flags;
	if (!(flags & kTcpSyn))
		p.payload = pattern(12);
	return p;
}

Packet6 make_udp6(const Ip6 &src, std::uint16_t sport, const Ip6 &dst, std::uint16_t dport,
		  std::size_t payload_len)
{
	Packet6 p;
	p.proto = kProtoUdp;
	p.src = src;
	p.dst = dst;
	p.sport = sport;
	p.dport = dport;
	p.payload = pattern(payload_len);
	return p;
}

Packet6 make_echo6(const Ip6 &src, const Ip6 &dst, std::uint16_t id, std::uint8_t type)
{
	Packet6 p;
	p.proto = kProtoIcmp6;
	p.src = src;
	p.dst = dst;
	p.icmp_type = type;
	p.icmp_id = id;
	p.payload = pattern(24);
	return p;
}

Parsed6 parse6(const Bytes &f)
{
	Parsed6 p;
	if (f.size() < 14 + 40 || get16(f, 12) != kEthIpv6 || (f[14] >> 4) != 6)
		return p;
	p.ip_end = 14 + 40 + get16(f, 18);
	if (p.ip_end > f.size())
		return p;
	p.ipv6 = true;
	p.hop_limit = f[21];
	std::copy(f.begin() + 22, f.begin() + 38, p.src.begin());
	std::copy(f.begin() + 38, f.begin() + 54, p.dst.begin());
	std::uint8_t nh = f[20];
	std::size_t off = 54;
	for (;;) {
		if (nh != kExtHopByHop && nh != kExtDstOpts && nh != kExtRouting &&
		    nh != kExtFragment)
			break;
		if (off + 8 > p.ip_end)
			return p;
		if (nh == kExtFragment) {
			if (get16(f, off + 2) & 0xfff9)
				p.fragment = true;
			nh = f[off];
			off += 8;
		} else {
			const std::size_t len = (std::size_t{f[off + 1]} + 1) * 8;
			nh = f[off];
			off += len;
		}
	}
	if (off > p.ip_end)
		return p;
	p.chain_ok = true;
	p.proto = nh;
	p.l4_off = off;
	if (p.fragment)
		return p;
	if ((nh == kProtoTcp || nh == kProtoUdp) && off + 8 <= p.ip_end) {
		p.sport = get16(f, off);
		p.dport = get16(f, off + 2);
	} else if (nh == kProtoIcmp6 && off + 8 <= p.ip_end) {
		p.icmp_type = f[off];
		p.sport = p.dport = get16(f, off + 4);
	}
	return p;
}

} // namespace kvmxdp::testpkt
