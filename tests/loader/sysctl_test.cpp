// SPDX-License-Identifier: GPL-2.0
#include <gtest/gtest.h>

#include "temp_dir.hpp"

#include <sys/stat.h>

#include <cstdlib>
#include <fstream>

#include "base/error.hpp"
#include "base/fs.hpp"
#include "base/sysctl.hpp"

using namespace kvmxdp;

namespace {

using test::TempDir;

void put(const std::string &path, const std::string &content)
{
	mkdir_p(path.substr(0, path.rfind('/')));
	std::ofstream(path) << content;
}

} // namespace

TEST(Sysctl, ReadWriteOnATempTree)
{
	TempDir t;
	// A bridge name with a dot: the key is a path, the dot stays.
	put(t.path() + "/net/ipv4/conf/br0.10/forwarding", "0\n");
	Sysctl s(t.path());
	EXPECT_EQ(forwarding_key("br0.10"), "net/ipv4/conf/br0.10/forwarding");
	EXPECT_TRUE(s.exists(forwarding_key("br0.10")));
	EXPECT_EQ(s.read(forwarding_key("br0.10")), "0");
	s.write(forwarding_key("br0.10"), "1");
	EXPECT_EQ(s.read(forwarding_key("br0.10")), "1");
	EXPECT_EQ(*read_file(t.path() + "/net/ipv4/conf/br0.10/forwarding"), "1\n");

	EXPECT_FALSE(s.try_read("net/ipv4/conf/nope/forwarding"));
	EXPECT_FALSE(s.exists("net/ipv4/conf/nope/forwarding"));
	try {
		s.read("net/ipv4/conf/nope/forwarding");
		FAIL();
	} catch (const Error &e) {
		EXPECT_NE(std::string(e.what()).find("nope/forwarding"), std::string::npos);
	}
	EXPECT_THROW(s.write("net/ipv4/conf/nope/forwarding", "1"), Error);
}

TEST(Sysctl, SaveAndRestoreAroundAttach)
{
	// What attach/detach do, on a temp tree: save, set, restore.
	TempDir t;
	put(t.path() + "/net/ipv4/conf/kb1/forwarding", "0\n");
	put(t.path() + "/" + kReservedPortsKey, "8080,9000-9100\n");
	Sysctl s(t.path());
	PortRange nat{61000, 65535};

	auto saved_fwd = s.read(forwarding_key("kb1"));
	auto saved_res = s.read(kReservedPortsKey);
	s.write(forwarding_key("kb1"), "1");
	s.write(kReservedPortsKey, reserved_ports_add(saved_res, nat));
	EXPECT_EQ(s.read(kReservedPortsKey), "8080,9000-9100,61000-65535");
	// Someone reserves another port meanwhile: it survives detach.
	s.write(kReservedPortsKey, reserved_ports_add(s.read(kReservedPortsKey), {5000, 5000}));

	s.write(forwarding_key("kb1"), saved_fwd);
	s.write(kReservedPortsKey,
		reserved_ports_remove(s.read(kReservedPortsKey), saved_res, nat));
	EXPECT_EQ(s.read(forwarding_key("kb1")), "0");
	EXPECT_EQ(s.read(kReservedPortsKey), "5000,8080,9000-9100");
}

TEST(ReservedPorts, ParseAndFormat)
{
	EXPECT_TRUE(parse_port_list("").empty());
	EXPECT_TRUE(parse_port_list("\n").empty());
	auto v = parse_port_list("9000-9100, 8080,9101-9200,8081");
	ASSERT_EQ(v.size(), 2u);
	EXPECT_EQ(v[0], (PortRange{8080, 8081}));
	EXPECT_EQ(v[1], (PortRange{9000, 9200}));
	EXPECT_EQ(format_port_list(v), "8080-8081,9000-9200");
	EXPECT_EQ(format_port_list({{7, 7}}), "7");
	EXPECT_THROW(parse_port_list("1-2-3"), Error);
	EXPECT_THROW(parse_port_list("70000"), Error);
	EXPECT_THROW(parse_port_list("10-5"), Error);
	EXPECT_THROW(parse_port_list("x"), Error);
}

TEST(ReservedPorts, MergeKeepsExistingEntries)
{
	EXPECT_EQ(reserved_ports_add("", {61000, 65535}), "61000-65535");
	EXPECT_EQ(reserved_ports_add("22,8080", {61000, 65535}), "22,8080,61000-65535");
	// Overlapping and adjacent entries merge like the kernel's bitmap.
	EXPECT_EQ(reserved_ports_add("60000-61500", {61000, 65535}), "60000-65535");
	EXPECT_EQ(reserved_ports_add("60999", {61000, 65535}), "60999-65535");
	EXPECT_EQ(reserved_ports_add("61000-65535", {61000, 65535}), "61000-65535");
}

TEST(ReservedPorts, RestoreRemovesOnlyWhatWeAdded)
{
	PortRange nat{61000, 65535};
	EXPECT_EQ(reserved_ports_remove("61000-65535", "", nat), "");
	EXPECT_EQ(reserved_ports_remove("22,61000-65535", "22", nat), "22");
	// A port inside our range that was reserved before attach stays.
	EXPECT_EQ(reserved_ports_remove("60000-65535", "60000-61500,62000", nat),
		  "60000-61500,62000");
	// Reservations made after attach, outside our range, stay too.
	EXPECT_EQ(reserved_ports_remove("22,1000-2000,61000-65535", "22", nat), "22,1000-2000");
	// Round trip from any starting point.
	for (std::string before : {"", "1", "60999", "61000", "65535", "100-200,64000-64010"}) {
		std::string during = reserved_ports_add(before, nat);
		EXPECT_EQ(reserved_ports_remove(during, before, nat),
			  format_port_list(parse_port_list(before)))
			<< before;
	}
}
