// SPDX-License-Identifier: GPL-2.0
// Reading a pinned map (kernel/maps.hpp find_pinned): the pin must be
// root's and not a link, and the map of this build's layout (the rows of
// control/resume.hpp kResumeTable) and kvx_cfg of a readable ABI version,
// before one key or value is read.  Real maps pinned in a bpffs of the
// test's own; needs root.
#include <gtest/gtest.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "base/error.hpp"
#include "base/fs.hpp"
#include "control/resume.hpp"
#include "error_of.hpp"
#include "kernel/maps.hpp"
#include "privileges.hpp"
#include "temp_dir.hpp"

using namespace kvmxdp;

namespace {

TEST(PinLayout, TheFirstDifferenceIsNamed)
{
	const MapLayout ct = pinned_layout(KVX_MAP_CT);
	MapInfo have;
	have.type = ct.type;
	have.key_size = ct.key_size;
	have.value_size = ct.value_size;
	EXPECT_EQ(layout_mismatch(have, ct), "");
	have.value_size = 88;
	EXPECT_EQ(layout_mismatch(have, ct), "value size 88, this kvmxdp expects 80");
	have.key_size = 20;
	EXPECT_EQ(layout_mismatch(have, ct), "key size 20, this kvmxdp expects 16");
	have.type = BPF_MAP_TYPE_LRU_HASH;
	EXPECT_EQ(layout_mismatch(have, ct), "type " + std::to_string(BPF_MAP_TYPE_LRU_HASH) +
						     ", this kvmxdp expects " +
						     std::to_string(BPF_MAP_TYPE_HASH));

	EXPECT_EQ(abi_version_mismatch(KVX_ABI_VERSION), "");
	EXPECT_EQ(abi_version_mismatch(KVX_ABI_TABLES_SINCE), "");
	EXPECT_EQ(abi_version_mismatch(KVX_ABI_VERSION + 1),
		  "ABI version " + std::to_string(KVX_ABI_VERSION + 1) + ", this kvmxdp uses " +
			  std::to_string(KVX_ABI_VERSION) + " (tables of " +
			  std::to_string(KVX_ABI_TABLES_SINCE) + ".." +
			  std::to_string(KVX_ABI_VERSION) + ")");
	EXPECT_NE(abi_version_mismatch(0), "") << "a kvx_cfg never written";
}

class PinnedMaps : public ::testing::Test {
protected:
	void SetUp() override
	{
		KVX_SKIP_WITHOUT_BPF_PRIVILEGE();
		KVX_SKIP_WITHOUT_MOUNT_PRIVILEGE();
		ASSERT_TRUE(fs_.mounted()) << fs_.error();
		auto dir = open_bpffs(fs_.path());
		ASSERT_TRUE(dir);
		dir_ = std::move(*dir);
	}

	// A map pinned as name; its fd.
	Fd pin(const char *name, uint32_t type, uint32_t key, uint32_t value, uint32_t n = 4)
	{
		Fd fd(bpf_map_create(static_cast<bpf_map_type>(type), name, key, value, n,
				     nullptr));
		EXPECT_GE(fd.get(), 0) << "bpf_map_create: " << std::strerror(errno);
		EXPECT_EQ(bpf_obj_pin(fd.get(), path(name).c_str()), 0)
			<< "pin " << name << ": " << std::strerror(errno);
		return fd;
	}
	Fd pin_cfg(uint32_t abi_version)
	{
		const MapLayout l = pinned_layout(KVX_MAP_CFG);
		Fd fd = pin(KVX_MAP_CFG, l.type, l.key_size, l.value_size, 1);
		kvx_cfg c{};
		c.abi_version = abi_version;
		write_cfg(fd.get(), c);
		return fd;
	}
	std::string path(const std::string &name) const { return fs_.path() + "/" + name; }
	// The message of the PinRefused that reading name throws ("" if none).
	std::string refusal(const char *name)
	{
		return test::error_of<PinRefused>(
			[&] { find_pinned(dir_, name, pinned_layout(name)); });
	}

	test::TempBpffs fs_;
	DirFd dir_;
};

TEST_F(PinnedMaps, ThisBuildsLayoutIsRead)
{
	const MapLayout l = pinned_layout(KVX_MAP_CT);
	Fd ct = pin(KVX_MAP_CT, l.type, l.key_size, l.value_size);
	kvx_ct_key k{};
	kvx_ct_val v{};
	v.ext_port = 4711;
	ASSERT_EQ(bpf_map_update_elem(ct.get(), &k, &v, BPF_ANY), 0);
	auto fd = find_pinned(dir_, KVX_MAP_CT, l);
	ASSERT_TRUE(fd);
	kvx_ct_val got{};
	ASSERT_EQ(bpf_map_lookup_elem(fd->get(), &k, &got), 0) << "the very map pinned";
	EXPECT_EQ(got.ext_port, 4711);

	EXPECT_FALSE(find_pinned(dir_, KVX_MAP_BIND, pinned_layout(KVX_MAP_BIND))) << "not pinned";
	auto open_bind = [&] { open_pinned(dir_, KVX_MAP_BIND, pinned_layout(KVX_MAP_BIND)); };
	EXPECT_EQ(test::error_of(open_bind),
		  "open pinned map " + path(KVX_MAP_BIND) + ": No such file or directory");
}

TEST_F(PinnedMaps, AnotherLayoutIsRefusedBeforeAnythingIsRead)
{
	pin(KVX_MAP_CT, BPF_MAP_TYPE_HASH, sizeof(kvx_ct_key), sizeof(kvx_ct_val) + 8);
	EXPECT_EQ(refusal(KVX_MAP_CT), path(KVX_MAP_CT) +
					       ": value size 88, this kvmxdp expects 80 (ABI " +
					       std::to_string(KVX_ABI_VERSION) +
					       "): pinned by another kvmxdp; use that one, or run "
					       "'kvmxdp detach' (drops conntrack state)");
	pin(KVX_MAP_BIND, BPF_MAP_TYPE_HASH, sizeof(kvx_bind_key) + 4, sizeof(kvx_bind_val));
	EXPECT_NE(refusal(KVX_MAP_BIND).find(": key size 12, this kvmxdp expects 8 (ABI "),
		  std::string::npos);
	// A per-CPU map where an array is read: its lookup would write a
	// value per CPU into one value's buffer.
	pin(KVX_MAP_CFG, BPF_MAP_TYPE_PERCPU_ARRAY, 4, sizeof(kvx_cfg), 1);
	EXPECT_NE(refusal(KVX_MAP_CFG)
			  .find(": type " + std::to_string(BPF_MAP_TYPE_PERCPU_ARRAY) +
				", this kvmxdp expects " + std::to_string(BPF_MAP_TYPE_ARRAY)),
		  std::string::npos);
}

TEST_F(PinnedMaps, KvxCfgOfAnotherAbiVersionIsRefused)
{
	Fd cfg = pin_cfg(KVX_ABI_VERSION);
	EXPECT_EQ(refusal(KVX_MAP_CFG), "");
	kvx_cfg c{};
	c.abi_version = KVX_ABI_VERSION + 1;
	write_cfg(cfg.get(), c);
	EXPECT_NE(refusal(KVX_MAP_CFG)
			  .find(path(KVX_MAP_CFG) + ": ABI version " +
				std::to_string(KVX_ABI_VERSION + 1) + ", this kvmxdp uses"),
		  std::string::npos);
	c.abi_version = 0;
	write_cfg(cfg.get(), c);
	EXPECT_NE(refusal(KVX_MAP_CFG).find(": ABI version 0,"), std::string::npos);
}

TEST_F(PinnedMaps, APinNotRootsAloneIsRefused)
{
	const MapLayout l = pinned_layout(KVX_MAP_CT);
	pin(KVX_MAP_CT, l.type, l.key_size, l.value_size);
	ASSERT_EQ(::chown(path(KVX_MAP_CT).c_str(), 65534, 65534), 0);
	EXPECT_EQ(refusal(KVX_MAP_CT), path(KVX_MAP_CT) +
					       ": owned by uid 65534, not root: kvmxdp reads only "
					       "pins that root alone can change");
	ASSERT_EQ(::chown(path(KVX_MAP_CT).c_str(), 0, 0), 0);
	ASSERT_EQ(::chmod(path(KVX_MAP_CT).c_str(), 0666), 0);
	EXPECT_NE(refusal(KVX_MAP_CT).find(": writable by group or others (mode 0666)"),
		  std::string::npos);
	ASSERT_EQ(::chmod(path(KVX_MAP_CT).c_str(), 0600), 0);
	EXPECT_EQ(refusal(KVX_MAP_CT), "");

	// A link to a pin of the right layout is not followed.
	ASSERT_EQ(::rename(path(KVX_MAP_CT).c_str(), path("elsewhere").c_str()), 0);
	ASSERT_EQ(::symlink("elsewhere", path(KVX_MAP_CT).c_str()), 0);
	EXPECT_NE(refusal(KVX_MAP_CT).find(": a symbolic link"), std::string::npos);
}

// count_keys (kernel/maps.hpp): the entries of a hash map, by batches of
// kMapReadBatch; the same count from the key walk it falls back to.
class MapCount : public ::testing::TestWithParam<bpf_map_type> {};

TEST_P(MapCount, CountsEveryEntryAcrossBatches)
{
	KVX_SKIP_WITHOUT_BPF_PRIVILEGE();
	// Room to spare: an LRU map may evict before it is full (free entries
	// sit in other CPUs' lists).
	const uint32_t max = 4 * kMapReadBatch;
	Fd m(bpf_map_create(GetParam(), "t_count", sizeof(uint32_t), 40, max, nullptr));
	ASSERT_GE(m.get(), 0) << "bpf_map_create: " << std::strerror(errno);
	EXPECT_EQ(count_keys(m.get(), sizeof(uint32_t)), 0u);
	std::vector<unsigned char> val(
		GetParam() == BPF_MAP_TYPE_PERCPU_HASH ?
			40 * static_cast<size_t>(libbpf_num_possible_cpus()) :
			40);
	const uint32_t n = 2 * kMapReadBatch + 77; // three batches, the last partial
	for (uint32_t k = 0; k < n; k++)
		ASSERT_EQ(bpf_map_update_elem(m.get(), &k, val.data(), BPF_NOEXIST), 0) << k;
	EXPECT_EQ(count_keys(m.get(), sizeof(uint32_t)), n);
	for (uint32_t k = 0; k < n; k += 3)
		ASSERT_EQ(bpf_map_delete_elem(m.get(), &k), 0);
	EXPECT_EQ(count_keys(m.get(), sizeof(uint32_t)), n - (n + 2) / 3);
}

INSTANTIATE_TEST_SUITE_P(HashTypes, MapCount,
			 ::testing::Values(BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_LRU_HASH,
					   BPF_MAP_TYPE_PERCPU_HASH),
			 [](const ::testing::TestParamInfo<bpf_map_type> &i) {
				 return i.param == BPF_MAP_TYPE_HASH ?
						std::string("Hash") :
					i.param == BPF_MAP_TYPE_LRU_HASH ?
						std::string("LruHash") :
						std::string("PerCpuHashByWalk");
			 });

} // namespace
