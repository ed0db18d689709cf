// SPDX-License-Identifier: GPL-2.0
// The pure decisions of attach's phases (control/attach.hpp): what resolve
// takes from the options and the config, what validate refuses, and what
// resume does with each pinned map (control/resume.hpp, kResumeTable).
#include <gtest/gtest.h>
#include <linux/bpf.h>
#include <linux/rtnetlink.h>

#include <algorithm>
#include <string>
#include <vector>

#include "base/error.hpp"
#include "control/attach.hpp"
#include "control/resume.hpp"
#include "error_of.hpp"
#include "kernel/routes.hpp"
#include "kernel/skel.hpp"
#include "kvmxdp_tc.skel.h"

namespace kvmxdp {
namespace {

using test::error_of;

#define EXPECT_ERROR_HAS(expr, text)                                                    \
	do {                                                                            \
		std::string m_ = error_of([&] { (void)(expr); });                       \
		EXPECT_NE(m_.find(text), std::string::npos) << "error: '" << m_ << "'"; \
	} while (0)

// ---- resume maps

MapInfo hash_map(uint32_t key, uint32_t value, uint32_t max)
{
	MapInfo m;
	m.type = BPF_MAP_TYPE_HASH;
	m.key_size = key;
	m.value_size = value;
	m.max_entries = max;
	return m;
}

PinnedMap pinned(const MapInfo &info, std::optional<uint32_t> abi = std::nullopt)
{
	return PinnedMap{info, "/sys/fs/bpf/kvmxdp/br0/map", abi};
}

MapSizes sizes()
{
	MapSizes s;
	s.ct_default = KVX_CT_DEFAULT_SIZE;
	s.bind_default = KVX_BIND_DEFAULT_SIZE;
	s.guests = 256;
	return s;
}

TEST(ResumeTable, TheCoreTablesAreRequiredAndOtherMapsHaveTheDefaultRule)
{
	for (const char *core : {KVX_MAP_CFG, KVX_MAP_CT, KVX_MAP_BIND})
		EXPECT_TRUE(resume_rule(core).required) << core;
	for (const char *other :
	     {KVX_MAP_STATS, KVX_MAP_GFLOWS, KVX_MAP_FRAG, KVX_MAP_XFDB, KVX_MAP_GUEST})
		EXPECT_FALSE(resume_rule(other).required) << other;
	MapResumeRule r = resume_rule(KVX_MAP_FRAG);
	EXPECT_EQ(r.size, SizeFrom::Object);
	EXPECT_EQ(r.replace, ReplaceIf::Never);
}

// The table names maps of the real object: a renamed or removed map would
// otherwise fall back to the default rule without a word.
TEST(ResumeTable, EveryRowIsAMapOfTheTcObject)
{
	Skel<kvmxdp_tc> skel("kvmxdp_tc"); // opened, never loaded: no privilege needed
	const std::vector<std::string> names = skel.map_names();
	for (const MapResumeRule &r : kResumeTable)
		EXPECT_NE(std::find(names.begin(), names.end(), r.map), names.end())
			<< r.map << " is in kResumeTable but not a map of kvmxdp_tc";
}

// Readers check a pin against its row (pinned_layout): every map of the
// object has one, with the object's own type, key and value size.
TEST(ResumeTable, EveryMapOfTheTcObjectHasItsLayout)
{
	Skel<kvmxdp_tc> skel("kvmxdp_tc");
	for (const std::string &name : skel.map_names()) {
		const MapResumeRule r = resume_rule(name);
		ASSERT_NE(r.map, nullptr) << name << " has no row in kResumeTable";
		const MapInfo spec = skel.map_spec(name.c_str());
		EXPECT_EQ(layout_mismatch(spec, r.layout), "") << name;
		EXPECT_EQ(layout_mismatch(spec, pinned_layout(name.c_str())), "") << name;
	}
	EXPECT_THROW(pinned_layout("kvx_nosuch"), Error);
}

TEST(ResumeTable, AMapNotPinnedIsCreatedAtTheSizeAsked)
{
	const MapInfo ct = hash_map(16, 48, KVX_CT_DEFAULT_SIZE);
	ResumeDecision d = decide_resume(resume_rule(KVX_MAP_CT), ct, std::nullopt, sizes());
	EXPECT_EQ(d.action, ResumeAction::Create);
	EXPECT_EQ(d.max_entries, uint32_t{KVX_CT_DEFAULT_SIZE});

	MapSizes s = sizes();
	s.ct = 4096;
	EXPECT_EQ(decide_resume(resume_rule(KVX_MAP_CT), ct, std::nullopt, s).max_entries, 4096u);
	s.ct.reset();
	s.ct_default = 8192; // the config's
	EXPECT_EQ(decide_resume(resume_rule(KVX_MAP_CT), ct, std::nullopt, s).max_entries, 8192u);

	const MapInfo gflows = hash_map(4, 4, KVX_GFLOWS_MAX);
	d = decide_resume(resume_rule(KVX_MAP_GFLOWS), gflows, std::nullopt, sizes());
	EXPECT_EQ(d.action, ResumeAction::Create);
	EXPECT_EQ(d.max_entries, uint32_t{KVX_GFLOWS_MAX})
		<< "one counter per guest slot, whatever the subnet";
	const MapInfo guest = hash_map(4, 16, KVX_GFLOWS_MAX);
	d = decide_resume(resume_rule(KVX_MAP_GUEST), guest, std::nullopt, sizes());
	EXPECT_EQ(d.max_entries, 256u) << "one owner per address of the subnet";
}

TEST(ResumeTable, ConntrackKeepsItsPinnedSizeUnlessAnotherIsAsked)
{
	const MapInfo spec = hash_map(16, 48, KVX_CT_DEFAULT_SIZE);
	const auto pin = pinned(hash_map(16, 48, 4096));
	ResumeDecision d = decide_resume(resume_rule(KVX_MAP_CT), spec, pin, sizes());
	EXPECT_EQ(d.action, ResumeAction::Reuse);
	EXPECT_EQ(d.max_entries, 4096u) << "adopted";

	MapSizes s = sizes();
	s.ct = 4096;
	EXPECT_EQ(decide_resume(resume_rule(KVX_MAP_CT), spec, pin, s).action, ResumeAction::Reuse);
	s.ct = 8192;
	EXPECT_ERROR_HAS(decide_resume(resume_rule(KVX_MAP_CT), spec, pin, s),
			 "has 4096 entries, requested 8192: resize needs 'kvmxdp detach' first");
	s.bind = 1024;
	EXPECT_ERROR_HAS(decide_resume(resume_rule(KVX_MAP_BIND), hash_map(12, 24, 65536),
				       pinned(hash_map(12, 24, 2048)), s),
			 "has 2048 entries, requested 1024");
}

// kvx_ovl holds a claim per flow at most: it follows kvx_ct's size.  A grown
// --ct-size over pinned maps is refused with one line (kvx_ct's, and
// kvx_ovl's own if asked alone), never a kvx_ovl left smaller than kvx_ct;
// a kvx_ovl made over an older kvx_ct (no kvx_ovl pinned before ABI 13)
// takes that kvx_ct's size, not the default.
TEST(ResumeTable, ClaimTableFollowsConntracksSize)
{
	const MapInfo ovl = hash_map(sizeof(kvx_ovl_key), sizeof(kvx_ovl_val), KVX_CT_DEFAULT_SIZE);
	MapSizes s = sizes();
	s.ct_pinned = 4096;
	ResumeDecision d = decide_resume(resume_rule(KVX_MAP_OVL), ovl, std::nullopt, s);
	EXPECT_EQ(d.action, ResumeAction::Create);
	EXPECT_EQ(d.max_entries, 4096u) << "the pinned kvx_ct's size";
	const auto pin = pinned(hash_map(sizeof(kvx_ovl_key), sizeof(kvx_ovl_val), 4096));
	d = decide_resume(resume_rule(KVX_MAP_OVL), ovl, pin, s);
	EXPECT_EQ(d.action, ResumeAction::Reuse);
	EXPECT_EQ(d.max_entries, 4096u);
	s.ct = 8192;
	EXPECT_ERROR_HAS(decide_resume(resume_rule(KVX_MAP_CT), hash_map(16, 48, 8192),
				       pinned(hash_map(16, 48, 4096)), s),
			 "has 4096 entries, requested 8192: resize needs 'kvmxdp detach' first");
	EXPECT_ERROR_HAS(decide_resume(resume_rule(KVX_MAP_OVL), ovl, pin, s),
			 "has 4096 entries, requested 8192: resize needs 'kvmxdp detach' first");
}

// The IPv6 tables: one entry while IPv6 is off, the IPv4 twin's size when
// it is on (--ct-size/--bind-size, else the pinned IPv4 table's, else the
// config's); reused at that size (flows survive a restart), replaced when
// IPv6 is turned on or off.
TEST(ResumeTable, TheIpv6TablesFollowTheModeAndTheIpv4Sizes)
{
	const MapInfo ct6 = hash_map(sizeof(kvx_ct6_key), sizeof(kvx_ct6_val), 1);
	const MapInfo bind6 = hash_map(sizeof(kvx_bind6_key), sizeof(kvx_bind6_val), 1);
	const MapResumeRule rc = resume_rule(KVX_MAP_CT6), rb = resume_rule(KVX_MAP_BIND6);
	EXPECT_FALSE(rc.required);
	MapSizes s = sizes();
	EXPECT_EQ(decide_resume(rc, ct6, std::nullopt, s).max_entries, 1u) << "off";
	EXPECT_EQ(decide_resume(rb, bind6, std::nullopt, s).max_entries, 1u) << "off";
	s.ipv6 = true;
	EXPECT_EQ(decide_resume(rc, ct6, std::nullopt, s).max_entries,
		  uint32_t{KVX_CT_DEFAULT_SIZE});
	EXPECT_EQ(decide_resume(rb, bind6, std::nullopt, s).max_entries,
		  uint32_t{KVX_BIND_DEFAULT_SIZE});
	s.ct_pinned = 4096;
	s.bind_pinned = 2048;
	EXPECT_EQ(decide_resume(rc, ct6, std::nullopt, s).max_entries, 4096u);
	EXPECT_EQ(decide_resume(rb, bind6, std::nullopt, s).max_entries, 2048u);
	s.ct = 8192;
	EXPECT_EQ(decide_resume(rc, ct6, std::nullopt, s).max_entries, 8192u);

	// Pinned at the size wanted: reused.  Pinned at one entry (IPv6 was
	// off) or at another size: replaced, said in the log.
	s.ct.reset();
	ResumeDecision d = decide_resume(
		rc, ct6, pinned(hash_map(sizeof(kvx_ct6_key), sizeof(kvx_ct6_val), 4096)), s);
	EXPECT_EQ(d.action, ResumeAction::Reuse);
	d = decide_resume(rc, ct6, pinned(hash_map(sizeof(kvx_ct6_key), sizeof(kvx_ct6_val), 1)),
			  s);
	EXPECT_EQ(d.action, ResumeAction::Replace);
	EXPECT_EQ(d.max_entries, 4096u);
	EXPECT_NE(d.note.find("has 1 IPv6 flows, this kvmxdp 4096"), std::string::npos) << d.note;
	s.ipv6 = false;
	d = decide_resume(rb, bind6,
			  pinned(hash_map(sizeof(kvx_bind6_key), sizeof(kvx_bind6_val), 2048)), s);
	EXPECT_EQ(d.action, ResumeAction::Replace);
	EXPECT_EQ(d.max_entries, 1u);
	// Another layout is still refused, never misread.
	EXPECT_ERROR_HAS(decide_resume(rc, ct6, pinned(hash_map(16, 48, 4096)), s),
			 "run 'kvmxdp detach' first");
}

TEST(ResumeTable, AnotherLayoutIsRefusedNamingTheDifference)
{
	const MapInfo spec = hash_map(16, 48, 4096);
	EXPECT_ERROR_HAS(decide_resume(resume_rule(KVX_MAP_CT), spec,
				       pinned(hash_map(16, 40, 4096)), sizes()),
			 "has value size 40, this kvmxdp expects 48: run 'kvmxdp detach' first");
	EXPECT_ERROR_HAS(decide_resume(resume_rule(KVX_MAP_FRAG), spec,
				       pinned(hash_map(12, 48, 4096)), sizes()),
			 "has key size 12, this kvmxdp expects 16");
	MapInfo lru = hash_map(16, 48, 4096);
	lru.type = BPF_MAP_TYPE_LRU_HASH;
	EXPECT_ERROR_HAS(decide_resume(resume_rule(KVX_MAP_FRAG), spec, pinned(lru), sizes()),
			 "has type");
	EXPECT_EQ(decide_resume(resume_rule(KVX_MAP_FRAG), spec, pinned(spec), sizes()).action,
		  ResumeAction::Reuse);
}

TEST(ResumeTable, ResizedCountersStartAfreshTheTablesNever)
{
	MapInfo stats = hash_map(4, 16, 40);
	stats.type = BPF_MAP_TYPE_PERCPU_ARRAY;
	MapInfo old = stats;
	old.max_entries = 32; // an older kvmxdp with fewer verdict reasons
	ResumeDecision d = decide_resume(resume_rule(KVX_MAP_STATS), stats, pinned(old), sizes());
	EXPECT_EQ(d.action, ResumeAction::Replace);
	EXPECT_EQ(d.note, "/sys/fs/bpf/kvmxdp/br0/map has 32 counters, this kvmxdp 40: counters "
			  "restart from zero (conntrack kept)");
	old.value_size = 8; // another layout: not counters this kvmxdp reads
	EXPECT_ERROR_HAS(decide_resume(resume_rule(KVX_MAP_STATS), stats, pinned(old), sizes()),
			 "value size 8");

	MapInfo gflows = hash_map(4, 4, KVX_GFLOWS_MAX);
	gflows.type = BPF_MAP_TYPE_ARRAY;
	MapInfo other_subnet = gflows;
	other_subnet.max_entries = 256; // sized to a /24 by a kvmxdp that counted per address
	d = decide_resume(resume_rule(KVX_MAP_GFLOWS), gflows, pinned(other_subnet), sizes());
	EXPECT_EQ(d.action, ResumeAction::Replace);
	EXPECT_EQ(d.max_entries, uint32_t{KVX_GFLOWS_MAX});
	EXPECT_EQ(d.note, "") << "recounted by attach: nothing to say";
	other_subnet.max_entries = KVX_GFLOWS_MAX;
	EXPECT_EQ(decide_resume(resume_rule(KVX_MAP_GFLOWS), gflows, pinned(other_subnet), sizes())
			  .action,
		  ResumeAction::Reuse);
	// Another layout of the guests' counters: replaced too, never refused
	// (a refusal would ask for a detach, which drops conntrack, for
	// counters attach recounts anyway).
	MapInfo other_layout = gflows;
	other_layout.value_size = 8;
	d = decide_resume(resume_rule(KVX_MAP_GFLOWS), gflows, pinned(other_layout), sizes());
	EXPECT_EQ(d.action, ResumeAction::Replace);
	EXPECT_EQ(d.max_entries, uint32_t{KVX_GFLOWS_MAX});
	// Pinned before version 6, without BPF_F_MMAPABLE: the GC could not
	// correct it with atomic adds (control/gc.cpp), so it is replaced.
	MapInfo mappable = gflows, unmappable = gflows;
	mappable.map_flags = BPF_F_MMAPABLE;
	EXPECT_EQ(decide_resume(resume_rule(KVX_MAP_GFLOWS), mappable, pinned(unmappable), sizes())
			  .action,
		  ResumeAction::Replace);
	EXPECT_EQ(decide_resume(resume_rule(KVX_MAP_GFLOWS), mappable, pinned(mappable), sizes())
			  .action,
		  ResumeAction::Reuse);
}

// The guests' IPv6 address owners of ABI 10..16 (24-byte values) are
// replaced, not refused: attach carries the guests' entries over (a
// refusal would ask for a detach, and the guests would have to run their
// DAD again).
TEST(ResumeTable, RelayOwnersOfAnOlderLayoutAreReplaced)
{
	MapSizes s = sizes();
	s.ipv6 = true;
	const MapResumeRule r = resume_rule(KVX_MAP_ND);
	const MapInfo nd = hash_map(sizeof(kvx_nd_key), sizeof(kvx_nd_val), 1);
	ResumeDecision d = decide_resume(r, nd, pinned(hash_map(16, 24, KVX_ND_DEFAULT_SIZE)), s);
	EXPECT_EQ(d.action, ResumeAction::Replace);
	EXPECT_EQ(d.max_entries, uint32_t{KVX_ND_DEFAULT_SIZE});
	EXPECT_NE(
		d.note.find(
			"has 4096 guest IPv6 addresses of 24 bytes, this kvmxdp 4096 of 32 bytes: "
			"replaced, the guests' addresses carried over"),
		std::string::npos)
		<< d.note;
	EXPECT_EQ(decide_resume(r, nd,
				pinned(hash_map(sizeof(kvx_nd_key), sizeof(kvx_nd_val),
						KVX_ND_DEFAULT_SIZE)),
				s)
			  .action,
		  ResumeAction::Reuse);
	// NAT66 owns its guests' addresses in it as relay does: the one-entry
	// table of an IPv4-only attach (or of a NAT66 one before) grows.
	d = decide_resume(r, nd, pinned(hash_map(sizeof(kvx_nd_key), sizeof(kvx_nd_val), 1)), s);
	EXPECT_EQ(d.action, ResumeAction::Replace);
	EXPECT_EQ(d.max_entries, uint32_t{KVX_ND_DEFAULT_SIZE});
	s.ipv6 = false;
	EXPECT_EQ(decide_resume(r, nd, pinned(hash_map(sizeof(kvx_nd_key), sizeof(kvx_nd_val), 1)),
				s)
			  .action,
		  ResumeAction::Reuse);
	s.ipv6 = true;
	// Another key is no table of ours: refused.
	EXPECT_ERROR_HAS(decide_resume(r, nd, pinned(hash_map(20, 24, KVX_ND_DEFAULT_SIZE)), s),
			 "run 'kvmxdp detach' first");
}

TEST(ResumeTable, ConfigOfACompatibleAbiIsReplacedOthersRefused)
{
	MapInfo cfg = hash_map(4, sizeof(kvx_cfg), 1);
	cfg.type = BPF_MAP_TYPE_ARRAY;
	EXPECT_EQ(decide_resume(resume_rule(KVX_MAP_CFG), cfg, pinned(cfg, KVX_ABI_VERSION),
				sizes())
			  .action,
		  ResumeAction::Reuse);

	MapInfo v1 = cfg;
	v1.value_size = 80;
	ResumeDecision d = decide_resume(resume_rule(KVX_MAP_CFG), cfg,
					 pinned(v1, KVX_ABI_TABLES_SINCE), sizes());
	EXPECT_EQ(d.action, ResumeAction::Replace);
	EXPECT_EQ(d.note, "/sys/fs/bpf/kvmxdp/br0/map is of ABI version " +
				  std::to_string(KVX_ABI_TABLES_SINCE) +
				  " (80 bytes): replaced, conntrack kept");

	EXPECT_ERROR_HAS(decide_resume(resume_rule(KVX_MAP_CFG), cfg,
				       pinned(cfg, KVX_ABI_VERSION + 1), sizes()),
			 "is of ABI version " + std::to_string(KVX_ABI_VERSION + 1) +
				 ", this kvmxdp uses " + std::to_string(KVX_ABI_VERSION));
	EXPECT_ERROR_HAS(decide_resume(resume_rule(KVX_MAP_CFG), cfg, pinned(cfg, 0), sizes()),
			 "run 'kvmxdp detach' first");
}

// ---- resolve

// An instance as the config records it.
Instance recorded()
{
	const char *text = R"({"version": 1, "instances": [{
		"bridge": "br0", "uplink": "wlan0", "subnet": "192.168.122.0/24",
		"nat_port_lo": 61000, "nat_port_hi": 65535, "eif": true,
		"ct_size": 4096, "bind_size": 2048,
		"bpffs": "/sys/fs/bpf", "pin_dir": "/sys/fs/bpf/kvmxdp/br0",
		"clsact_created": {"bridge": true, "uplink": false}, "saved_sysctls": {},
		"clamp_mss": 1400, "mode": "tc", "flow_quota": 100, "timeouts": "udp=10",
		"metrics": "127.0.0.1:9810",
		"mappings": [{"ext": "10.0.0.9", "guest": "192.168.122.9", "proto": "any",
			      "add_address": false, "network": null, "gateway": null}]}]})";
	return config_from_json(nlohmann::json::parse(text)).instances.at(0);
}

TEST(AttachResolve, BridgeAloneTakesTheRestFromItsInstance)
{
	Config cfg;
	cfg.instances = {recorded()};
	AttachOptions a;
	a.bridge = "br0";
	AttachPlan p = resolve_attach(a, cfg, "/etc/kvmxdp/kvmxdp.json");
	EXPECT_EQ(p.uplink, "wlan0");
	ASSERT_TRUE(p.subnet);
	EXPECT_EQ(p.subnet->str(), "192.168.122.0/24");
	ASSERT_TRUE(p.nat_ports);
	EXPECT_EQ(p.nat_ports->str(), "61000-65535");
	EXPECT_TRUE(p.eif);
	EXPECT_EQ(p.mode, HookMode::Tc);
	EXPECT_EQ(p.clamp_mss, 1400);
	EXPECT_EQ(p.flow_quota, 100u);
	EXPECT_EQ(p.timeouts, "udp=10");
	EXPECT_EQ(p.metrics, "127.0.0.1:9810");
	EXPECT_FALSE(p.ct_size) << "the pinned size or the config's, decided by resume";
	EXPECT_EQ(p.mappings.size(), 1u);
	ASSERT_TRUE(p.prev);

	cfg.instances[0].uplink_auto = true;
	EXPECT_EQ(resolve_attach(a, cfg, "x").uplink, kUplinkAuto);
}

// --ipv6-inbound: relay's alone, recorded, kept by a later attach.
TEST(AttachResolve, Ipv6InboundIsRelaysAndKept)
{
	Config cfg;
	cfg.instances = {recorded()};
	AttachOptions a;
	a.bridge = "br0";
	a.ipv6_inbound = "open";
	try {
		resolve_attach(a, cfg, "x");
		ADD_FAILURE() << "--ipv6-inbound without relay accepted";
	} catch (const Error &e) {
		EXPECT_STREQ(e.what(), "--ipv6-inbound open: only relay mode has an inbound policy "
				       "(add --ipv6 relay)");
	}
	a.ipv6 = "relay";
	AttachPlan p = resolve_attach(a, cfg, "x");
	EXPECT_EQ(p.ipv6, Ipv6Choice::Relay);
	EXPECT_TRUE(p.ipv6_inbound_open);
	cfg.instances[0].ipv6 = Ipv6Choice::Relay;
	cfg.instances[0].ipv6_inbound_open = true;
	AttachOptions again;
	again.bridge = "br0";
	EXPECT_TRUE(resolve_attach(again, cfg, "x").ipv6_inbound_open);
	a.ipv6_inbound = "closed";
	EXPECT_THROW(check_attach_syntax(a), Error);
	a.ipv6_inbound = "stateful";
	EXPECT_FALSE(resolve_attach(a, cfg, "x").ipv6_inbound_open);
}

TEST(AttachResolve, ExplicitOptionsWin)
{
	Config cfg;
	cfg.instances = {recorded()};
	AttachOptions a;
	a.bridge = "br0";
	a.uplink = "eth0";
	a.mode = "xdp";
	a.clamp_mss = 0;
	a.flow_quota = 0;
	a.timeouts = "icmp=5";
	a.ct_size = 1024;
	AttachPlan p = resolve_attach(a, cfg, "x");
	EXPECT_EQ(p.uplink, "eth0");
	EXPECT_FALSE(p.subnet) << "with --uplink, the subnet is the bridge's again";
	EXPECT_FALSE(p.eif) << "with --uplink, --eif is what was typed";
	EXPECT_EQ(p.mode, HookMode::Xdp);
	EXPECT_EQ(p.clamp_mss, 0);
	EXPECT_EQ(p.flow_quota, 0u);
	EXPECT_EQ(p.timeouts, "icmp=5");
	EXPECT_EQ(p.ct_size, 1024u);
	EXPECT_EQ(p.mappings.size(), 1u) << "the instance's mappings stay";
}

TEST(AttachResolve, Subnet6KeptUntilReplacedOrNone)
{
	Config cfg;
	cfg.instances = {recorded()};
	cfg.instances[0].subnet6 = parse_subnet6("fd42::/64", "x");
	AttachOptions a;
	a.bridge = "br0";
	a.uplink = "eth0";
	// Like --mode, not like --subnet: a setting of the user's, not the
	// bridge's address.
	AttachPlan p = resolve_attach(a, cfg, "x");
	ASSERT_TRUE(p.subnet6);
	EXPECT_EQ(p.subnet6->str(), "fd42::/64");
	a.subnet6 = "fd43:1::/48";
	p = resolve_attach(a, cfg, "x");
	ASSERT_TRUE(p.subnet6);
	EXPECT_EQ(p.subnet6->str(), "fd43:1::/48");
	a.subnet6 = "none";
	EXPECT_FALSE(resolve_attach(a, cfg, "x").subnet6);
	a.subnet6 = "fd42::1/64";
	EXPECT_ERROR_HAS(check_attach_syntax(a), "invalid --subnet6 'fd42::1/64': host bits set");
	a.subnet6 = "";
	EXPECT_ERROR_HAS(check_attach_syntax(a), "invalid --subnet6 '': expected PREFIX/n");
}

TEST(AttachResolve, MetricsOffDropsTheRecordedEndpoint)
{
	Config cfg;
	cfg.instances = {recorded()};
	AttachOptions a;
	a.bridge = "br0";
	a.metrics = "off";
	EXPECT_EQ(resolve_attach(a, cfg, "x").metrics, "");
	a.metrics = "0.0.0.0:9100";
	EXPECT_EQ(resolve_attach(a, cfg, "x").metrics, "0.0.0.0:9100");
}

TEST(AttachOptions, MetricsListenIsAddrColonPort)
{
	const MetricsListen l = parse_metrics_listen("127.0.0.1:9810", "--metrics");
	EXPECT_EQ(l.addr, 0x7f000001u);
	EXPECT_EQ(l.port, 9810);
	for (const char *bad : {"", "9810", "127.0.0.1", "127.0.0.1:", ":9810", "127.0.0.1:0",
				"127.0.0.1:65536", "127.0.0.1:9x", "[::1]:9810", "::1:9810",
				"localhost:9810", "127.0.0.1:-1", "127.0.0.1:0009810"}) {
		try {
			parse_metrics_listen(bad, "--metrics");
			ADD_FAILURE() << "accepted '" << bad << "'";
		} catch (const ConfigError &e) {
			EXPECT_NE(std::string(e.what()).find(std::string("--metrics '") + bad + "'"),
				  std::string::npos)
				<< e.what();
		}
	}
}

TEST(AttachResolve, DetachedBridgeGetsItsUplinkAndMappingsBack)
{
	Config cfg;
	Detached d;
	d.uplink = "auto";
	d.mappings = recorded().mappings;
	cfg.detached["br0"] = d;
	AttachOptions a;
	a.bridge = "br0";
	AttachPlan p = resolve_attach(a, cfg, "x");
	EXPECT_EQ(p.uplink, "auto");
	EXPECT_EQ(p.mappings.size(), 1u);
	EXPECT_FALSE(p.prev);
	EXPECT_EQ(p.mode, HookMode::Auto);
	EXPECT_EQ(p.clamp_mss, 0);
}

TEST(AttachResolve, BridgeAloneWithoutARecordIsRefused)
{
	AttachOptions a;
	a.bridge = "br9";
	EXPECT_ERROR_HAS(resolve_attach(a, Config{}, "/etc/kvmxdp/kvmxdp.json"),
			 "attach --bridge br9 without --uplink: no instance of 'br9' in "
			 "/etc/kvmxdp/kvmxdp.json to take it from");
}

TEST(AttachResolve, SyntaxIsCheckedBeforeAnythingElse)
{
	AttachOptions a;
	a.bridge = "br0";
	a.uplink = "wlan0";
	EXPECT_EQ(error_of([&] { check_attach_syntax(a); }), "");
	a.subnet = "192.168.300.0/24";
	EXPECT_ERROR_HAS(check_attach_syntax(a), "192.168.300.0/24");
	a.subnet.reset();
	a.mode = "fast";
	EXPECT_ERROR_HAS(check_attach_syntax(a), "invalid --mode 'fast'");
	a.mode.reset();
	a.timeouts = "udp=0";
	EXPECT_ERROR_HAS(check_attach_syntax(a), "udp=0");
	a.timeouts.reset();
	a.uplink = "bad/name";
	EXPECT_ERROR_HAS(check_attach_syntax(a), "invalid interface name 'bad/name'");
	a.uplink = ""; // taken from the config later
	EXPECT_EQ(error_of([&] { check_attach_syntax(a); }), "");
}

// ---- validate

IfAddr addr(const char *a, uint8_t prefix, bool secondary = false)
{
	IfAddr ia;
	ia.addr = parse_ipv4(a);
	ia.prefix = prefix;
	ia.secondary = secondary;
	ia.scope = RT_SCOPE_UNIVERSE;
	return ia;
}

TEST(AttachValidate, TheSubnetIsANetworkOfTheBridge)
{
	const std::vector<IfAddr> addrs = {addr("192.168.122.1", 24), addr("10.9.0.1", 16, true)};
	EXPECT_EQ(choose_subnet(addrs, std::nullopt, "br0").str(), "192.168.122.0/24");
	EXPECT_EQ(choose_subnet(addrs, parse_cidr("10.9.0.0/16"), "br0").str(), "10.9.0.0/16");
	EXPECT_ERROR_HAS(choose_subnet(addrs, parse_cidr("10.8.0.0/16"), "br0"),
			 "subnet 10.8.0.0/16 is not a network of bridge 'br0' (its IPv4 "
			 "addresses: 192.168.122.1/24, 10.9.0.1/16)");
	EXPECT_ERROR_HAS(choose_subnet({}, std::nullopt, "br0"),
			 "bridge 'br0' has no IPv4 address");
	EXPECT_ERROR_HAS(choose_subnet({}, parse_cidr("10.8.0.0/16"), "br0"),
			 "(its IPv4 addresses: none)");
}

TEST(AttachValidate, OneBridgePerUplink)
{
	Config cfg;
	cfg.instances = {recorded()};
	EXPECT_EQ(error_of([&] { check_uplink_free(cfg, "br0", "wlan0", false); }), "")
		<< "its own instance (a resume)";
	EXPECT_EQ(error_of([&] { check_uplink_free(cfg, "br1", "eth0", false); }), "");
	EXPECT_ERROR_HAS(check_uplink_free(cfg, "br1", "wlan0", false),
			 "uplink 'wlan0' is already used by the kvmxdp instance of bridge 'br0'");
	EXPECT_EQ(error_of([&] { check_uplink_free(cfg, "br1", "", true); }), "");
	cfg.instances[0].uplink_auto = true;
	EXPECT_ERROR_HAS(check_uplink_free(cfg, "br1", "", true),
			 "the kvmxdp instance of bridge 'br0' already follows the default route");
}

TEST(AttachValidate, OneBpffsPerBridge)
{
	std::optional<Instance> prev = recorded();
	prev->bpffs = "/sys/fs/bpf";
	EXPECT_EQ(error_of([&] { check_same_bpffs(prev, "br0", "/sys/fs/bpf"); }), "");
	EXPECT_EQ(error_of([&] { check_same_bpffs(std::nullopt, "br0", "/tmp/bpf"); }), "");
	EXPECT_ERROR_HAS(check_same_bpffs(prev, "br0", "/tmp/bpf"),
			 "bridge 'br0' is attached with --bpffs /sys/fs/bpf (this is /tmp/bpf)");
}

} // namespace
} // namespace kvmxdp
