// SPDX-License-Identifier: GPL-2.0
// Real (unpinned) kvx_ct and kvx_bind hash maps for a unit test, and the
// writer and reader of binding halves in the datapath's layout.  Needs
// root/CAP_BPF: without it the test is skipped; as root a map that cannot be
// made fails it.
#pragma once

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

#include "base/fd.hpp"
#include "kvmxdp/abi.h"
#include "privileges.hpp"

namespace kvmxdp::test {

class KernelMapsTest : public ::testing::Test {
protected:
	void SetUp() override
	{
		KVX_SKIP_WITHOUT_BPF_PRIVILEGE();
		ct_.reset(bpf_map_create(BPF_MAP_TYPE_HASH, "t_ct", sizeof(kvx_ct_key),
					 sizeof(kvx_ct_val), 64, nullptr));
		ASSERT_GE(ct_.get(), 0) << "bpf_map_create(t_ct): " << std::strerror(errno);
		bind_.reset(bpf_map_create(BPF_MAP_TYPE_HASH, "t_bind", sizeof(kvx_bind_key),
					   sizeof(kvx_bind_val), 64, nullptr));
		ASSERT_GE(bind_.get(), 0) << "bpf_map_create(t_bind): " << std::strerror(errno);
	}

	// A binding half's key (host order in, network order in the map).
	static kvx_bind_key bind_key(uint8_t dir, uint8_t proto, uint32_t addr, uint16_t port)
	{
		kvx_bind_key k{};
		k.dir = dir;
		k.proto = proto;
		k.addr = htonl(addr);
		k.port = htons(port);
		return k;
	}

	// One binding half: true, and its value in *v, if it exists.
	bool lookup_bind(uint8_t dir, uint8_t proto, uint32_t addr, uint16_t port, kvx_bind_val *v)
	{
		const kvx_bind_key k = bind_key(dir, proto, addr, port);
		return bpf_map_lookup_elem(bind_.get(), &k, v) == 0;
	}

	// Both halves of a binding (host order in, network order in the map):
	// IN ext:eport -> guest:gport, OUT guest:gport -> ext:eport.
	void put_pair(uint8_t proto, uint32_t guest, uint16_t gport, uint32_t ext, uint16_t eport,
		      uint64_t used, uint16_t flags = 0)
	{
		kvx_bind_key in{}, out{};
		kvx_bind_val inv{}, outv{};
		in.dir = KVX_BIND_IN;
		in.proto = proto;
		in.addr = htonl(ext);
		in.port = htons(eport);
		inv.addr = htonl(guest);
		inv.port = htons(gport);
		inv.flags = flags;
		inv.last_used_ns = used;
		out.dir = KVX_BIND_OUT;
		out.proto = proto;
		out.addr = htonl(guest);
		out.port = htons(gport);
		outv.addr = htonl(ext);
		outv.port = htons(eport);
		outv.flags = flags;
		outv.last_used_ns = used;
		ASSERT_EQ(bpf_map_update_elem(bind_.get(), &in, &inv, BPF_NOEXIST), 0);
		ASSERT_EQ(bpf_map_update_elem(bind_.get(), &out, &outv, BPF_NOEXIST), 0);
	}

	Fd ct_, bind_;
};

} // namespace kvmxdp::test
