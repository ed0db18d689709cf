// SPDX-License-Identifier: GPL-2.0
#include "base/sysctl.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>

#include "base/error.hpp"

namespace kvmxdp {

std::optional<std::string> Sysctl::try_read(const std::string &key) const
{
	int fd = ::open(path(key).c_str(), O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT || errno == ENOTDIR)
			return std::nullopt;
		throw_errno("read", path(key));
	}
	std::string out;
	char buf[4096];
	for (;;) {
		ssize_t n = ::read(fd, buf, sizeof(buf));
		if (n < 0) {
			int e = errno;
			::close(fd);
			throw Error("read", path(key), e);
		}
		if (n == 0)
			break;
		out.append(buf, static_cast<size_t>(n));
	}
	::close(fd);
	while (!out.empty() && std::isspace(static_cast<unsigned char>(out.back())))
		out.pop_back();
	return out;
}

std::string Sysctl::read(const std::string &key) const
{
	auto v = try_read(key);
	if (!v)
		throw Error("read", path(key), ENOENT);
	return *v;
}

bool Sysctl::exists(const std::string &key) const
{
	return ::access(path(key).c_str(), F_OK) == 0;
}

void Sysctl::write(const std::string &key, const std::string &value) const
{
	// O_TRUNC matters only for the regular files of unit tests.
	int fd = ::open(path(key).c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
	if (fd < 0)
		throw_errno("write", path(key));
	std::string data = value + "\n";
	ssize_t n = ::write(fd, data.data(), data.size());
	int e = errno;
	::close(fd);
	if (n < 0)
		throw Error("write '" + value + "' to", path(key), e);
	if (static_cast<size_t>(n) != data.size())
		throw Error("short write of '" + value + "' to " + path(key));
}

std::string forwarding_key(const std::string &ifname)
{
	return "net/ipv4/conf/" + ifname + "/forwarding";
}

std::string forwarding6_key(const std::string &ifname)
{
	return "net/ipv6/conf/" + ifname + "/forwarding";
}

std::string accept_ra_key(const std::string &ifname)
{
	return "net/ipv6/conf/" + ifname + "/accept_ra";
}

namespace {

std::vector<PortRange> normalize(std::vector<PortRange> v)
{
	std::sort(v.begin(), v.end(),
		  [](const PortRange &a, const PortRange &b) { return a.lo < b.lo; });
	std::vector<PortRange> out;
	for (const auto &r : v) {
		// Merge overlapping and adjacent ranges, as the kernel's bitmap does.
		if (!out.empty() && uint32_t{r.lo} <= uint32_t{out.back().hi} + 1)
			out.back().hi = std::max(out.back().hi, r.hi);
		else
			out.push_back(r);
	}
	return out;
}

} // namespace

std::vector<PortRange> parse_port_list(const std::string &text)
{
	std::vector<PortRange> v;
	size_t pos = 0;
	std::string t;
	for (char c : text)
		if (!std::isspace(static_cast<unsigned char>(c)))
			t += c;
	while (pos < t.size()) {
		auto comma = t.find(',', pos);
		std::string item = t.substr(pos, comma == std::string::npos ? comma : comma - pos);
		pos = comma == std::string::npos ? t.size() : comma + 1;
		if (item.empty())
			continue;
		try {
			if (item.find('-') == std::string::npos) {
				// Port 0 may appear in the kernel's list; keep it.
				auto p = static_cast<uint16_t>(parse_uint(item, 65535, "port"));
				v.push_back({p, p});
			} else {
				auto dash = item.find('-');
				auto lo = parse_uint(item.substr(0, dash), 65535, "port");
				auto hi = parse_uint(item.substr(dash + 1), 65535, "port");
				if (lo > hi)
					throw Error("");
				v.push_back({static_cast<uint16_t>(lo), static_cast<uint16_t>(hi)});
			}
		} catch (const Error &) {
			throw Error("cannot parse port list '" + text + "' at '" + item + "'");
		}
	}
	return normalize(v);
}

std::string format_port_list(const std::vector<PortRange> &ranges)
{
	std::string out;
	for (const auto &r : normalize(ranges)) {
		if (!out.empty())
			out += ',';
		out += r.lo == r.hi ? std::to_string(r.lo) : r.str();
	}
	return out;
}

std::string reserved_ports_add(const std::string &current, const PortRange &range)
{
	auto v = parse_port_list(current);
	v.push_back(range);
	return format_port_list(v);
}

std::string reserved_ports_remove(const std::string &current, const std::string &saved,
				  const PortRange &range)
{
	std::vector<PortRange> out;
	for (const auto &r : parse_port_list(current)) {
		if (!r.overlaps(range)) {
			out.push_back(r);
			continue;
		}
		if (r.lo < range.lo)
			out.push_back({r.lo, static_cast<uint16_t>(range.lo - 1)});
		if (r.hi > range.hi)
			out.push_back({static_cast<uint16_t>(range.hi + 1), r.hi});
	}
	for (const auto &r : parse_port_list(saved)) {
		if (r.overlaps(range))
			out.push_back({std::max(r.lo, range.lo), std::min(r.hi, range.hi)});
	}
	return format_port_list(out);
}

} // namespace kvmxdp
