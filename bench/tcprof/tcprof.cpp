// kvx-tcprof: cost per packet of kvmxdp's TC programs (and the minimal
// static SNAT of bench/minimal) under BPF_PROG_TEST_RUN with repeat = N,
// in a private network namespace (tests/bpf/netns.cpp's topology: the fib
// lookup resolves as on a real host).  See tcprof.bpf.c for the harness.
//
//   kvx-tcprof [--repeat N] [--rounds R] [--cases udp_out,udp_in,tcp_out,ref]
//              [--cfg-flags BITS] [--minimal SNAT_TC_SRC --bpf-cc cmake/bpf-cc]
//              [--harness tcprof.bpf.o] OBJ...
//
// Every OBJ is a kvmxdp_tc.bpf.o (e.g. builds of two commits); each case
// prints the median and the minimum over R rounds of ns per run, the
// harness (frame restore + tail call, measured with prof_nop) subtracted.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/pkt_cls.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "datapath.hpp"
#include "netns.hpp"
#include "pkt.hpp"

using namespace kvmxdp::test;
using namespace kvmxdp::testpkt;

namespace {

constexpr std::uint32_t kGuest = ip4(192, 168, 122, 10);
constexpr std::uint32_t kRemote = ip4(198, 18, 0, 10);
constexpr Mac kGuestMac{0x52, 0x54, 0x00, 0x00, 0x00, 0x0a};

int g_repeat = 200000;
int g_rounds = 11;
Topology g_topo;
std::uint32_t g_cfg_flags = 0; // ORed into kvx_cfg.flags
std::string g_cases = "udp_out,udp_in,tcp_out";

bool want(const char *c)
{
	return ("," + g_cases + ",").find(std::string(",") + c + ",") != std::string::npos;
}

[[noreturn]] void die(const std::string &msg)
{
	std::fprintf(stderr, "kvx-tcprof: error: %s\n", msg.c_str());
	std::exit(1);
}

bpf_object *open_load(const std::string &path)
{
	bpf_object *o = bpf_object__open_file(path.c_str(), nullptr);
	if (!o)
		die("open " + path);
	if (bpf_object__load(o))
		die("load " + path);
	return o;
}

int prog_fd(bpf_object *o, const char *name)
{
	bpf_program *p = bpf_object__find_program_by_name(o, name);
	if (!p)
		die(std::string("no program ") + name);
	return bpf_program__fd(p);
}

int map_fd(bpf_object *o, const char *name)
{
	bpf_map *m = bpf_object__find_map_by_name(o, name);
	if (!m)
		die(std::string("no map ") + name);
	return bpf_map__fd(m);
}

struct Harness {
	bpf_object *obj;
	int run_fd, nop_fd, jmp_fd, frame_fd;
};

// One test_run of the harness with frame restored before every repeat.
// Returns ns per repeat; *verdict the program's return value.
double run(const Harness &h, int target_fd, const Bytes &frame, int ifindex, int repeat,
	   int *verdict)
{
	__u32 zero = 0;
	std::uint8_t f[64] = {};
	std::memcpy(f, frame.data(), std::min<std::size_t>(frame.size(), sizeof(f)));
	if (frame.size() < sizeof(f))
		die("frame shorter than the 64-byte restore");
	if (bpf_map_update_elem(h.frame_fd, &zero, f, BPF_ANY) ||
	    bpf_map_update_elem(h.jmp_fd, &zero, &target_fd, BPF_ANY))
		die("harness maps");
	Bytes out(frame.size() + 256);
	__sk_buff ctx;
	std::memset(&ctx, 0, sizeof(ctx));
	ctx.ifindex = static_cast<__u32>(ifindex);
	bpf_test_run_opts o;
	std::memset(&o, 0, sizeof(o));
	o.sz = sizeof(o);
	o.data_in = frame.data();
	o.data_size_in = static_cast<__u32>(frame.size());
	o.data_out = out.data();
	o.data_size_out = static_cast<__u32>(out.size());
	o.ctx_in = &ctx;
	o.ctx_size_in = sizeof(ctx);
	o.repeat = repeat;
	if (bpf_prog_test_run_opts(h.run_fd, &o))
		die(std::string("test_run: ") + std::strerror(errno));
	*verdict = static_cast<int>(o.retval);
	return o.duration;
}

// One thing to measure: a program on a frame, and what it must return.
struct Case {
	std::string object, name;
	int fd;
	Bytes frame;
	int ifindex, verdict;
	std::vector<double> ns; // per round, the harness of that round subtracted
};

// Rounds go round-robin over all cases (and the harness), so a machine
// that changes speed (a shared VM) shifts every case alike.
void measure_all(const Harness &h, std::vector<Case> &cases)
{
	int verdict = 0;
	for (auto &c : cases) // the first run creates the flow
		run(h, c.fd, c.frame, c.ifindex, 1, &verdict);
	for (int r = 0; r < g_rounds; r++) {
		for (auto &c : cases) {
			double base = run(h, h.nop_fd, c.frame, c.ifindex, g_repeat, &verdict);
			double t = run(h, c.fd, c.frame, c.ifindex, g_repeat, &verdict);
			if (verdict != c.verdict)
				die(c.object + " " + c.name + ": verdict " + std::to_string(verdict) +
				    ", expected " + std::to_string(c.verdict));
			c.ns.push_back(t - base);
		}
	}
}

Bytes udp_out()
{
	Packet p = make_udp(kGuest, 10000, kRemote, 9000, 18); // a 60-byte frame, as the bench
	p.src_mac = kGuestMac;
	p.dst_mac = Topology::kBridgeMac;
	p.pad_to = 64;
	return p.build();
}

Bytes udp_in()
{
	Packet p = make_udp(kRemote, 9000, Topology::kUplinkAddr, 10000, 18);
	p.src_mac = Topology::kGatewayMac;
	p.dst_mac = Topology::kUplinkMac;
	p.pad_to = 64;
	return p.build();
}

Bytes tcp_out()
{
	Packet p = make_tcp(kGuest, 10001, kRemote, 9001, kTcpAck);
	p.payload = pattern(16);
	p.src_mac = kGuestMac;
	p.dst_mac = Topology::kBridgeMac;
	return p.build();
}

void setup_cfg(bpf_object *o)
{
	kvx_cfg c = Datapath::default_cfg(g_topo);
	c.nat_port_lo = 1024; // as the bench: the guest's port is kept
	c.nat_port_hi = 60999;
	c.flags |= g_cfg_flags;
	__u32 zero = 0;
	if (bpf_map_update_elem(map_fd(o, "kvx_cfg"), &zero, &c, BPF_ANY))
		die("kvx_cfg");
}

std::string hex(std::uint32_t host)
{
	char b[16];
	std::snprintf(b, sizeof(b), "0x%08x", host);
	return b;
}

std::string mac_list(const Mac &m)
{
	std::string s;
	for (auto b : m)
		s += (s.empty() ? "" : ",") + std::to_string(b);
	return s;
}

// The minimal SNAT's constants come from this topology, so it is compiled
// here, by cmake/bpf-cc like every BPF object of the project (its flags, its
// clang-14): no shell, so the arguments need no quoting.
bpf_object *build_minimal(const std::string &bpf_cc, const std::string &src)
{
	char dir[] = "/tmp/kvx-tcprof-XXXXXX";
	if (!mkdtemp(dir))
		die(std::string("mkdtemp: ") + std::strerror(errno));
	const std::string obj = std::string(dir) + "/snat_tc.bpf.o";
	std::vector<std::string> args = {
		bpf_cc,
		"-DGUEST_ADDR=" + hex(kGuest),
		"-DSUBNET=" + hex(Topology::kSubnet),
		"-DSUBNET_MASK=" + hex(Topology::kSubnetMask),
		"-DUPLINK_ADDR=" + hex(Topology::kUplinkAddr),
		"-DUP_IFINDEX=" + std::to_string(g_topo.uplink_ifindex),
		"-DBR_IFINDEX=" + std::to_string(g_topo.bridge_ifindex),
		"-DUP_MAC=" + mac_list(Topology::kUplinkMac),
		"-DLAN_MAC=" + mac_list(Topology::kGatewayMac),
		"-DBR_MAC=" + mac_list(Topology::kBridgeMac),
		"-DGUEST_MAC=" + mac_list(kGuestMac),
		"-c", src, "-o", obj};
	std::vector<char *> argv;
	for (auto &a : args)
		argv.push_back(a.data());
	argv.push_back(nullptr);
	const pid_t pid = fork();
	if (pid < 0)
		die(std::string("fork: ") + std::strerror(errno));
	if (pid == 0) {
		execv(argv[0], argv.data());
		std::fprintf(stderr, "kvx-tcprof: exec %s: %s\n", argv[0], std::strerror(errno));
		_exit(127);
	}
	int status = 0;
	const bool built = waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
			   WEXITSTATUS(status) == 0;
	bpf_object *o = built ? open_load(obj) : nullptr;
	// bpf-cc left its uapi links next to the object: remove the whole dir.
	std::error_code ec;
	std::filesystem::remove_all(dir, ec);
	if (!built)
		die(bpf_cc + " failed on " + src);
	return o;
}

} // namespace

int main(int argc, char **argv)
{
	std::string minimal, bpf_cc;
	std::vector<std::string> objs;
	std::string harness_obj = "tcprof.bpf.o";
	for (int i = 1; i < argc; i++) {
		std::string a = argv[i];
		if (a == "--repeat" && i + 1 < argc)
			g_repeat = std::atoi(argv[++i]);
		else if (a == "--rounds" && i + 1 < argc)
			g_rounds = std::atoi(argv[++i]);
		else if (a == "--minimal" && i + 1 < argc)
			minimal = argv[++i];
		else if (a == "--bpf-cc" && i + 1 < argc)
			bpf_cc = argv[++i];
		else if (a == "--cfg-flags" && i + 1 < argc)
			g_cfg_flags = static_cast<std::uint32_t>(std::strtoul(argv[++i], nullptr, 0));
		else if (a == "--cases" && i + 1 < argc)
			g_cases = argv[++i];
		else if (a == "--harness" && i + 1 < argc)
			harness_obj = argv[++i];
		else
			objs.push_back(a);
	}
	std::string err;
	std::string skip = enter_private_netns(g_topo, err);
	if (!skip.empty() || !err.empty())
		die("netns: " + skip + err);

	Harness h;
	h.obj = open_load(harness_obj);
	h.run_fd = prog_fd(h.obj, "prof_run");
	h.nop_fd = prog_fd(h.obj, "prof_nop");
	h.jmp_fd = map_fd(h.obj, "prof_jmp");
	h.frame_fd = map_fd(h.obj, "prof_frame");

	const int br = g_topo.bridge_ifindex, up = g_topo.uplink_ifindex;
	std::vector<Case> cases;
	std::vector<bpf_object *> keep;
	if (want("ref"))
		for (const char *ref : {"ref_ktime_boot", "ref_ktime_coarse", "ref_jiffies",
					"ref_hash4", "ref_hash8", "ref_hash16", "ref_fib",
					"ref_l3csum", "ref_csum_diff", "ref_pcpu", "ref_redirect"})
			cases.push_back({"reference", ref, prog_fd(h.obj, ref), udp_out(), br,
					 TC_ACT_OK, {}});
	if (!minimal.empty()) {
		if (bpf_cc.empty())
			die("--minimal needs --bpf-cc PATH (cmake/bpf-cc)");
		bpf_object *m = build_minimal(bpf_cc, minimal);
		keep.push_back(m);
		cases.push_back({"minimal snat_tc", "udp_out", prog_fd(m, "snat_br"), udp_out(), br,
				 TC_ACT_REDIRECT, {}});
	}
	for (const auto &path : objs) {
		bpf_object *o = bpf_object__open_file(path.c_str(), nullptr);
		if (!o || bpf_object__load(o)) {
			std::fprintf(stderr, "kvx-tcprof: %s does not load: skipped\n", path.c_str());
			bpf_object__close(o);
			continue;
		}
		keep.push_back(o);
		setup_cfg(o);
		for (const char *pn : {"kvx_br_ingress", "kvx_up_ingress"}) {
			bpf_prog_info info;
			__u32 len = sizeof(info);
			std::memset(&info, 0, sizeof(info));
			if (!bpf_obj_get_info_by_fd(prog_fd(o, pn), &info, &len))
				std::fprintf(stderr, "# %s %s: verified_insns %u, xlated %u B, jited %u B\n",
					     path.c_str(), pn, info.verified_insns,
					     info.xlated_prog_len, info.jited_prog_len);
		}
		std::string name = path.size() > 40 ? path.substr(path.size() - 40) : path;
		if (want("udp_out"))
			cases.push_back({name, "udp_out", prog_fd(o, "kvx_br_ingress"), udp_out(), br,
					 TC_ACT_REDIRECT, {}});
		if (want("udp_in"))
			cases.push_back({name, "udp_in", prog_fd(o, "kvx_up_ingress"), udp_in(), up,
					 TC_ACT_REDIRECT, {}});
		if (want("tcp_out"))
			cases.push_back({name, "tcp_out", prog_fd(o, "kvx_br_ingress"), tcp_out(), br,
					 TC_ACT_REDIRECT, {}});
	}
	measure_all(h, cases);
	std::printf("# ns per run, harness subtracted per round; repeat %d, %d rounds "
		    "round-robin\n", g_repeat, g_rounds);
	std::printf("%-40s %-16s %7s %7s %7s\n", "object", "case", "median", "min", "max");
	for (auto &c : cases) {
		std::sort(c.ns.begin(), c.ns.end());
		std::printf("%-40s %-16s %7.1f %7.1f %7.1f\n", c.object.c_str(), c.name.c_str(),
			    c.ns[c.ns.size() / 2], c.ns.front(), c.ns.back());
	}
	for (auto *o : keep)
		bpf_object__close(o);
	return 0;
}
