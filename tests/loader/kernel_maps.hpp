// SPDX-License-Identifier: GPL-2.0
// Real (unpinned) kvx_ct and kvx_bind hash maps for a unit test, and the
// writer of a binding pair in the datapath's layout.  Needs root/CAP_BPF:
// without it the test is skipped.
#pragma once

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>

#include "base/fd.hpp"
#include "kvmxdp/abi.h"

namespace kvmxdp::test {

class KernelMapsTest : public ::testing::Test {
protected:
	void SetUp() override
	{
		int ct = bpf_map_create(BPF_MAP_TYPE_HASH, "t_ct", sizeof(kvx_ct_key),
					sizeof(kvx_ct_val), 64, nullptr);
		int bind = bpf_map_create(BPF_MAP_TYPE_HASH, "t_bind", sizeof(kvx_bind_key),
					  sizeof(kvx_bind_val), 64, nullptr);
		if (ct < 0 || bind < 0) {
			if (ct >= 0)
				::close(ct);
			if (bind >= 0)
				::close(bind);
			GTEST_SKIP() << "cannot create BPF maps (needs root/CAP_BPF)";
		}
		ct_.reset(ct);
		bind_.reset(bind);
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
