// SPDX-License-Identifier: GPL-2.0
// The two address families' state tables (abi.h kvx_ct/kvx_bind and
// kvx_ct6/kvx_bind6) as one shape, so that the GC, the flushes and the
// conntrack views are one code for both (templates over F = Family4 or
// Family6), never an IPv6 copy of the IPv4 code.  Internal to control/.
#pragma once

#include <arpa/inet.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <functional>
#include <type_traits>

#include "base/netaddr.hpp"
#include "base/netaddr6.hpp"
#include "kvmxdp/abi.h"

namespace kvmxdp {

// The IPv6 values embed the IPv4 ones at offset 0, so every rule (expiry,
// static, idle) reads `ct()`/`bind()` of either; only the addresses, and
// the hash keys made of them, differ.  The sweep holds every key of a
// 1M-entry table in hash sets: for IPv4 64-bit keys, not tuples in a tree
// (the sweep's user time at 1M flows).
struct Family4 {
	using CtKey = kvx_ct_key;
	using CtVal = kvx_ct_val;
	using BindKey = kvx_bind_key;
	using BindVal = kvx_bind_val;
	using Addr = uint32_t; // network order
	using Ext = uint64_t;  // (dir,) proto, port, address
	using ExtHash = std::hash<uint64_t>;
	static constexpr bool kQuota = true; // kvx_gflows counts IPv4 flows
	static constexpr const char *kName = "ipv4";

	static const kvx_ct_val &ct(const CtVal &v) { return v; }
	static const kvx_bind_val &bind(const BindVal &v) { return v; }
	static kvx_bind_val &bind(BindVal &v) { return v; }
	static Addr ext_addr(const CtVal &v) { return v.ext_addr; }
	static Addr int_addr(const CtKey &k) { return k.int_addr; }
	static Addr rem_addr(const CtKey &k) { return k.rem_addr; }
	static Addr val_addr(const BindVal &v) { return v.addr; }
	static std::string str(Addr a) { return format_ipv4(ntohl(a)); }
	// A key to sort by: host order, as the user reads addresses.
	static uint32_t order(Addr a) { return ntohl(a); }
	static void set_addr(BindKey &k, Addr a) { k.addr = a; }
	static Ext ext(uint8_t proto, Addr addr, uint16_t port_be)
	{
		return uint64_t(proto) << 48 | uint64_t(port_be) << 32 | addr;
	}
	static Ext bind_key(const BindKey &k)
	{
		return uint64_t(k.dir) << 56 | ext(k.proto, k.addr, k.port);
	}
};

struct Ext6 {
	uint64_t hi, lo; // the address
	uint32_t tag;	 // dir << 24 | proto << 16 | port
	bool operator==(const Ext6 &o) const { return hi == o.hi && lo == o.lo && tag == o.tag; }
};
struct Ext6Hash {
	size_t operator()(const Ext6 &e) const
	{
		// Addresses share their /64 (the uplink's): mix the halves.
		uint64_t h = e.lo * 0x9e3779b97f4a7c15ULL ^ e.hi;
		h ^= (h >> 29) ^ (uint64_t(e.tag) * 0xbf58476d1ce4e5b9ULL);
		return static_cast<size_t>(h ^ (h >> 32));
	}
};

struct Family6 {
	using CtKey = kvx_ct6_key;
	using CtVal = kvx_ct6_val;
	using BindKey = kvx_bind6_key;
	using BindVal = kvx_bind6_val;
	using Addr = Ipv6Addr;
	using Ext = Ext6;
	using ExtHash = Ext6Hash;
	static constexpr bool kQuota = false; // no IPv6 flow counters (yet)
	static constexpr const char *kName = "ipv6";

	static const kvx_ct_val &ct(const CtVal &v) { return v.ct; }
	static const kvx_bind_val &bind(const BindVal &v) { return v.bind; }
	static kvx_bind_val &bind(BindVal &v) { return v.bind; }
	static Addr to_addr(const __be32 (&w)[4])
	{
		Addr a;
		std::memcpy(a.data(), w, a.size());
		return a;
	}
	static Addr ext_addr(const CtVal &v) { return to_addr(v.ext_addr); }
	static Addr int_addr(const CtKey &k) { return to_addr(k.int_addr); }
	static Addr rem_addr(const CtKey &k) { return to_addr(k.rem_addr); }
	static Addr val_addr(const BindVal &v) { return to_addr(v.addr); }
	static std::string str(const Addr &a) { return format_ipv6(a); }
	static const Addr &order(const Addr &a) { return a; } // bytes: network order
	static void set_addr(BindKey &k, const Addr &a) { std::memcpy(k.addr, a.data(), a.size()); }
	static Ext ext(uint8_t proto, const Addr &addr, uint16_t port_be, uint8_t dir = 0)
	{
		Ext6 e{};
		std::memcpy(&e.hi, addr.data(), 8);
		std::memcpy(&e.lo, addr.data() + 8, 8);
		e.tag = uint32_t(dir) << 24 | uint32_t(proto) << 16 | port_be;
		return e;
	}
	static Ext bind_key(const BindKey &k)
	{
		return ext(k.proto, to_addr(k.addr), k.port, k.dir);
	}
};

// A binding key's address (the guest's for OUT, the external one for IN).
template <typename F>
typename F::Addr key_addr(const typename F::BindKey &k)
{
	if constexpr (std::is_same_v<F, Family4>)
		return k.addr;
	else
		return F::to_addr(k.addr);
}

// The key of the other half: the address and port the value names.
template <typename F>
typename F::BindKey other_half(const typename F::BindKey &k, const typename F::BindVal &v)
{
	typename F::BindKey o{};
	o.dir = k.dir == KVX_BIND_IN ? KVX_BIND_OUT : KVX_BIND_IN;
	o.proto = k.proto;
	o.port = F::bind(v).port;
	F::set_addr(o, F::val_addr(v));
	return o;
}

// Half `half` (value half_val) points back at `to`.
template <typename F>
bool points_to(const typename F::BindVal &half_val, const typename F::BindKey &to)
{
	return F::val_addr(half_val) == key_addr<F>(to) && F::bind(half_val).port == to.port;
}

} // namespace kvmxdp
