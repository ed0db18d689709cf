// SPDX-License-Identifier: GPL-2.0
#include "kernel/tc.hpp"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <cerrno>

#include "base/error.hpp"
#include "base/log.hpp"
#include "kernel/netlink.hpp"

namespace kvmxdp {

namespace {

bpf_tc_hook make_hook(int ifindex, bpf_tc_attach_point point)
{
	bpf_tc_hook h{};
	h.sz = sizeof(h);
	h.ifindex = ifindex;
	h.attach_point = point;
	return h;
}

bpf_tc_opts make_opts()
{
	bpf_tc_opts o{};
	o.sz = sizeof(o);
	o.handle = kTcHandle;
	o.priority = kTcPriority;
	return o;
}

} // namespace

bool tc_hook_create(int ifindex, const std::string &ifname)
{
	auto h = make_hook(ifindex, BPF_TC_INGRESS);
	int err = bpf_tc_hook_create(&h);
	if (err == -EEXIST)
		return false;
	check_libbpf(err, "create clsact qdisc on", ifname);
	return true;
}

void tc_hook_destroy(int ifindex, const std::string &ifname)
{
	// INGRESS|EGRESS deletes the qdisc itself; one of them alone would
	// only flush that hook's filters.
	auto h = make_hook(ifindex,
			   static_cast<bpf_tc_attach_point>(BPF_TC_INGRESS | BPF_TC_EGRESS));
	int err = bpf_tc_hook_destroy(&h);
	if (err == -ENOENT || err == -EINVAL || err == -ENODEV)
		return;
	check_libbpf(err, "delete clsact qdisc on", ifname);
}

void tc_attach(int ifindex, const std::string &ifname, int prog_fd)
{
	auto h = make_hook(ifindex, BPF_TC_INGRESS);
	auto o = make_opts();
	o.prog_fd = prog_fd;
	o.flags = BPF_TC_F_REPLACE;
	check_libbpf(bpf_tc_attach(&h, &o), "attach TC ingress filter on", ifname);
}

bool tc_detach(int ifindex, const std::string &ifname)
{
	auto h = make_hook(ifindex, BPF_TC_INGRESS);
	auto o = make_opts();
	int err = bpf_tc_detach(&h, &o);
	if (err == -ENOENT || err == -ENODEV || err == -EINVAL)
		return false;
	check_libbpf(err, "detach TC ingress filter from", ifname);
	return true;
}

std::optional<uint32_t> tc_query(int ifindex)
{
	auto h = make_hook(ifindex, BPF_TC_INGRESS);
	auto o = make_opts();
	if (bpf_tc_query(&h, &o) < 0)
		return std::nullopt;
	return o.prog_id;
}

bool tc_attach_ingress(int ifindex, const std::string &ifname, int prog_fd)
{
	bool created = tc_hook_create(ifindex, ifname);
	bool had_filter = tc_query(ifindex).has_value();
	try {
		tc_attach(ifindex, ifname, prog_fd);
	} catch (const Error &e) {
		if (created)
			tc_hook_destroy(ifindex, ifname);
		// One kind of classifier per priority in a clsact chain: the
		// usual EINVAL is another tool's filter at ours.
		if (e.err() != EINVAL || had_filter)
			throw;
		throw Error(std::string(e.what()) + " (is another tool's filter at priority " +
			    std::to_string(kTcPriority) + " on " + ifname +
			    " ingress? kvmxdp's filter needs that priority: 'tc filter show dev " +
			    ifname + " ingress')");
	}
	return created;
}

void tc_remove_ingress(NlSocket &nl, const std::string &ifname, bool created_clsact)
{
	std::optional<LinkInfo> link;
	try {
		link = find_link(nl, ifname);
	} catch (const Error &) {
	}
	if (!link) {
		log_verbose("device " + ifname + " is gone: nothing to detach there");
		return;
	}
	tc_detach(link->ifindex, ifname);
	if (!created_clsact)
		return;
	// Unknown (-1) counts as "others may be there".
	int left = count_clsact_filters(nl, link->ifindex);
	if (left > 0)
		log_warn("leaving the clsact qdisc on " + ifname + ": " + std::to_string(left) +
			 " filter(s) of other tools remain");
	else if (left < 0)
		log_warn("leaving the clsact qdisc on " + ifname +
			 ": its filters cannot be counted (remove it with 'tc qdisc del dev " + ifname +
			 " clsact' if nothing else uses it)");
	if (left != 0)
		return;
	tc_hook_destroy(link->ifindex, ifname);
}

} // namespace kvmxdp
