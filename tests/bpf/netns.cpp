#include "netns.hpp"
#include "privileges.hpp"

#include <bpf/libbpf.h>
#include <fcntl.h>
#include <linux/if_ether.h>
#include <linux/if_link.h>
#include <linux/if_packet.h>
#include <arpa/inet.h>
#include <poll.h>
#include <sys/socket.h>
#include <net/if.h>
#include <sched.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

extern char **environ;

namespace kvmxdp::test {
namespace {

std::string join(const std::vector<std::string> &argv)
{
	std::string s;
	for (const auto &a : argv)
		s += (s.empty() ? "" : " ") + a;
	return s;
}

// The pipe, file actions and attributes of one posix_spawn, released on
// every path.
class Spawn {
public:
	Spawn()
	{
		if (pipe2(fds_, O_CLOEXEC) != 0)
			throw std::runtime_error(std::string("pipe2: ") + std::strerror(errno));
		posix_spawn_file_actions_init(&actions_);
		posix_spawn_file_actions_adddup2(&actions_, fds_[1], STDERR_FILENO);
		posix_spawn_file_actions_addopen(&actions_, STDOUT_FILENO, "/dev/null", O_WRONLY,
						 0);
	}
	~Spawn()
	{
		posix_spawn_file_actions_destroy(&actions_);
		close_fd(fds_[0]);
		close_fd(fds_[1]);
	}
	Spawn(const Spawn &) = delete;
	Spawn &operator=(const Spawn &) = delete;

	// Returns the wait status and fills err with the child's stderr.
	int run(const std::vector<std::string> &argv, std::string &err)
	{
		std::vector<char *> args;
		for (const auto &a : argv)
			args.push_back(const_cast<char *>(a.c_str()));
		args.push_back(nullptr);
		pid_t pid;
		int rc = posix_spawnp(&pid, args[0], &actions_, nullptr, args.data(), environ);
		if (rc != 0)
			throw std::runtime_error(join(argv) + ": spawn: " + std::strerror(rc));
		close_fd(fds_[1]);
		char buf[512];
		ssize_t n;
		while ((n = read(fds_[0], buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR))
			if (n > 0)
				err.append(buf, static_cast<std::size_t>(n));
		int status = 0;
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
		}
		return status;
	}

private:
	static void close_fd(int &fd)
	{
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	int fds_[2] = {-1, -1};
	posix_spawn_file_actions_t actions_;
};

int ifindex_of(const char *name)
{
	unsigned idx = if_nametoindex(name);
	if (idx == 0)
		throw std::runtime_error(std::string("if_nametoindex ") + name + ": " +
					 std::strerror(errno));
	return static_cast<int>(idx);
}

} // namespace

void must_run(const std::vector<std::string> &argv)
{
	std::string err;
	int status = Spawn().run(argv, err);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		std::ostringstream o;
		o << join(argv) << ": ";
		if (WIFEXITED(status))
			o << "exit " << WEXITSTATUS(status);
		else
			o << "status " << status;
		o << ": " << err;
		throw std::runtime_error(o.str());
	}
}

void write_sysctl(const std::string &path, const std::string &value)
{
	std::ofstream f(path);
	f << value << "\n";
	f.flush();
	if (!f)
		throw std::runtime_error("write " + path + " = " + value + " failed");
}

std::string read_sysctl(const std::string &path)
{
	std::ifstream f(path);
	std::string v;
	if (!(f >> v))
		throw std::runtime_error("read " + path + " failed");
	return v;
}

std::string enter_private_netns(Topology &t, std::string &error)
{
	// Skip only without the privilege (tests/common/privileges.hpp); a
	// privileged process that cannot unshare has a broken setup: a failure.
	const std::string missing = missing_capabilities({CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_BPF});
	if (!missing.empty())
		return "needs root for a private netns and BPF_PROG_TEST_RUN (lacks " + missing + ")";
	error.clear();
	// Only this (single) thread and the commands it spawns move: the root
	// namespace is never modified.
	if (unshare(CLONE_NEWNET) != 0) {
		error = std::string("unshare(CLONE_NEWNET) with CAP_SYS_ADMIN: ") + std::strerror(errno);
		return "";
	}

	const std::string ip = "ip";
	try {
		// No IPv6: its autoconfiguration would send frames (DAD, RS) into
		// the bridge while a program is attached for the real-device tests.
		write_sysctl("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1");
		write_sysctl("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1");
		// br_netfilter (when loaded) validates IPv4 headers of frames
		// entering the bridge and drops malformed ones before the bridge
		// device's TC hook: the real-device tests want the
		// program to see them.  These sysctls are per network namespace.
		for (const char *f : {"bridge-nf-call-iptables", "bridge-nf-call-ip6tables",
				      "bridge-nf-call-arptables"}) {
			const std::string path = std::string("/proc/sys/net/bridge/") + f;
			if (access(path.c_str(), F_OK) == 0)
				write_sysctl(path, "0");
		}
		must_run({ip, "link", "set", "lo", "up"});

		must_run({ip, "link", "add", Topology::kBridge, "address",
			  testpkt::mac_str(Topology::kBridgeMac), "type", "bridge", "stp_state",
			  "0"});
		// veth pairs, not dummies: CONFIG_DUMMY is not in every kernel.
		must_run({ip, "link", "add", Topology::kBridgePort, "address",
			  testpkt::mac_str(Topology::kBridgePortMac), "type", "veth", "peer",
			  "name", Topology::kBridgePortPeer});
		must_run({ip, "link", "set", Topology::kBridgePortPeer, "up"});
		must_run({ip, "link", "set", Topology::kBridgePort, "master", Topology::kBridge});
		must_run({ip, "link", "add", Topology::kBridgePort2, "address",
			  testpkt::mac_str(Topology::kBridgePort2Mac), "type", "veth", "peer",
			  "name", Topology::kBridgePort2Peer});
		must_run({ip, "link", "set", Topology::kBridgePort2, "master", Topology::kBridge});
		must_run({ip, "addr", "add", "192.168.122.1/24", "dev", Topology::kBridge});
		must_run({ip, "link", "set", Topology::kBridgePort, "up"});
		must_run({ip, "link", "set", Topology::kBridge, "up"});

		must_run({ip, "link", "add", Topology::kUplink, "address",
			  testpkt::mac_str(Topology::kUplinkMac), "type", "veth", "peer", "name",
			  Topology::kUplinkPeer});
		must_run({ip, "addr", "add", "10.77.0.2/24", "dev", Topology::kUplink});
		must_run({ip, "link", "set", Topology::kUplinkPeer, "up"});
		must_run({ip, "link", "set", Topology::kUplink, "up"});
		must_run({ip, "neigh", "replace", "10.77.0.1", "lladdr",
			  testpkt::mac_str(Topology::kGatewayMac), "dev", Topology::kUplink, "nud",
			  "permanent"});
		must_run({ip, "route", "add", "default", "via", "10.77.0.1", "dev",
			  Topology::kUplink});

		must_run({ip, "link", "add", Topology::kOther, "type", "veth", "peer", "name",
			  Topology::kOtherPeer});
		must_run({ip, "link", "set", Topology::kOtherPeer, "up"});
		must_run({ip, "addr", "add", "172.31.0.1/24", "dev", Topology::kOther});
		must_run({ip, "link", "set", Topology::kOther, "up"});
		must_run({ip, "neigh", "replace", "172.31.0.7", "lladdr",
			  testpkt::mac_str(Topology::kOtherNeighMac), "dev", Topology::kOther,
			  "nud", "permanent"});

		must_run({ip, "route", "add", "blackhole", "198.51.100.0/24"});
		must_run({ip, "route", "add", "unreachable", "203.0.113.0/24"});
		must_run({ip, "route", "add", "prohibit", "192.0.2.0/24"});

		// IPv6 on the three routed devices only, without anything that
		// would send frames on its own (DAD, router solicitations) or
		// take routes from outside (RAs).  Their peers and the bridge
		// ports keep it off: nothing answers, nothing comes in.
		for (const char *dev : {Topology::kBridge, Topology::kUplink, Topology::kOther}) {
			const std::string conf = std::string("/proc/sys/net/ipv6/conf/") + dev + "/";
			write_sysctl(conf + "accept_dad", "0");
			write_sysctl(conf + "accept_ra", "0");
			write_sysctl(conf + "router_solicitations", "0");
			write_sysctl(conf + "disable_ipv6", "0");
		}
		must_run({ip, "-6", "addr", "add", std::string(Topology::kBridgeAddr6) + "/64", "dev",
			  Topology::kBridge, "nodad"});
		must_run({ip, "-6", "addr", "add", std::string(Topology::kUplinkAddr6) + "/64", "dev",
			  Topology::kUplink, "nodad"});
		must_run({ip, "-6", "neigh", "replace", Topology::kGatewayAddr6, "lladdr",
			  testpkt::mac_str(Topology::kGatewayMac), "dev", Topology::kUplink, "nud",
			  "permanent"});
		must_run({ip, "-6", "route", "add", "default", "via", Topology::kGatewayAddr6, "dev",
			  Topology::kUplink});
		must_run({ip, "-6", "route", "add", std::string(Topology::kOtherNet6) + "/64", "dev",
			  Topology::kOther});
		must_run({ip, "-6", "neigh", "replace", Topology::kOtherNeigh6, "lladdr",
			  testpkt::mac_str(Topology::kOtherNeighMac), "dev", Topology::kOther, "nud",
			  "permanent"});
		must_run({ip, "-6", "route", "add", "unreachable",
			  std::string(Topology::kUnreachNet6) + "/48"});
		write_sysctl(std::string("/proc/sys/net/ipv6/conf/") + Topology::kBridge +
				     "/forwarding",
			     "1");

		// bpf_fib_lookup returns FWD_DISABLED unless forwarding is on for
		// the ingress device; private namespace only.
		write_sysctl(std::string("/proc/sys/net/ipv4/conf/") + Topology::kBridge +
				     "/forwarding",
			     "1");

		t.bridge_ifindex = ifindex_of(Topology::kBridge);
		t.uplink_ifindex = ifindex_of(Topology::kUplink);
		t.other_ifindex = ifindex_of(Topology::kOther);
		t.bridge_port_ifindex = ifindex_of(Topology::kBridgePort);
		t.bridge_port2_ifindex = ifindex_of(Topology::kBridgePort2);
		t.bridge_port_peer_ifindex = ifindex_of(Topology::kBridgePortPeer);
		t.uplink_peer_ifindex = ifindex_of(Topology::kUplinkPeer);
	} catch (const std::exception &e) {
		error = std::string("building the test topology failed: ") + e.what();
	}
	return "";
}

TcIngress::TcIngress(int ifindex, int prog_fd)
{
	std::memset(&hook_, 0, sizeof(hook_));
	hook_.sz = sizeof(hook_);
	hook_.ifindex = ifindex;
	hook_.attach_point = BPF_TC_INGRESS;
	int err = bpf_tc_hook_create(&hook_);
	if (err && err != -EEXIST)
		throw std::runtime_error("bpf_tc_hook_create: " + std::string(std::strerror(-err)));
	bpf_tc_opts opts;
	std::memset(&opts, 0, sizeof(opts));
	opts.sz = sizeof(opts);
	opts.prog_fd = prog_fd;
	err = bpf_tc_attach(&hook_, &opts);
	if (err) {
		bpf_tc_hook_destroy(&hook_);
		throw std::runtime_error("bpf_tc_attach: " + std::string(std::strerror(-err)));
	}
}

TcIngress::~TcIngress()
{
	// Removes the clsact qdisc with its filters (ours, in our netns).
	hook_.attach_point = static_cast<bpf_tc_attach_point>(BPF_TC_INGRESS | BPF_TC_EGRESS);
	bpf_tc_hook_destroy(&hook_);
}

XdpAttached::XdpAttached(int ifindex, int prog_fd)
	: ifindex_(ifindex)
{
	int err = bpf_xdp_attach(ifindex, prog_fd, XDP_FLAGS_SKB_MODE, nullptr);
	if (err)
		throw std::runtime_error("bpf_xdp_attach: " + std::string(std::strerror(-err)));
}

XdpAttached::~XdpAttached()
{
	bpf_xdp_detach(ifindex_, XDP_FLAGS_SKB_MODE, nullptr);
}

void send_frame(int ifindex, const testpkt::Bytes &frame)
{
	int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
	if (fd < 0)
		throw std::runtime_error(std::string("socket(AF_PACKET): ") + std::strerror(errno));
	sockaddr_ll sll;
	std::memset(&sll, 0, sizeof(sll));
	sll.sll_family = AF_PACKET;
	sll.sll_ifindex = ifindex;
	sll.sll_halen = ETH_ALEN;
	std::memcpy(sll.sll_addr, frame.data(), ETH_ALEN);
	ssize_t n = sendto(fd, frame.data(), frame.size(), 0, reinterpret_cast<sockaddr *>(&sll),
			   sizeof(sll));
	int err = errno;
	close(fd);
	if (n != static_cast<ssize_t>(frame.size()))
		throw std::runtime_error("send " + std::to_string(frame.size()) +
					 "-byte frame: " + std::strerror(err));
}

Capture::Capture(int ifindex)
{
	fd_ = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
	if (fd_ < 0)
		throw std::runtime_error(std::string("socket(AF_PACKET): ") + std::strerror(errno));
	sockaddr_ll sll;
	std::memset(&sll, 0, sizeof(sll));
	sll.sll_family = AF_PACKET;
	sll.sll_protocol = htons(ETH_P_ALL);
	sll.sll_ifindex = ifindex;
	if (bind(fd_, reinterpret_cast<sockaddr *>(&sll), sizeof(sll)) != 0) {
		int err = errno;
		close(fd_);
		throw std::runtime_error(std::string("bind(AF_PACKET): ") + std::strerror(err));
	}
}

Capture::~Capture()
{
	close(fd_);
}

std::optional<testpkt::Bytes> Capture::next_ipv4(int timeout_ms)
{
	for (;;) {
		pollfd pfd{fd_, POLLIN, 0};
		if (poll(&pfd, 1, timeout_ms) <= 0)
			return std::nullopt;
		testpkt::Bytes buf(65536);
		sockaddr_ll from;
		socklen_t fromlen = sizeof(from);
		ssize_t n = recvfrom(fd_, buf.data(), buf.size(), 0,
				     reinterpret_cast<sockaddr *>(&from), &fromlen);
		if (n < 0)
			return std::nullopt;
		// Incoming only (not what this side sends), only IPv4, and only
		// unicast: the kernel's own IGMP reports (224.0.0.22, sent when a
		// device of the topology joins a group) arrive at any moment.
		if (from.sll_pkttype == PACKET_OUTGOING || from.sll_protocol != htons(ETH_P_IP) ||
		    from.sll_pkttype == PACKET_MULTICAST || from.sll_pkttype == PACKET_BROADCAST)
			continue;
		buf.resize(static_cast<std::size_t>(n));
		return buf;
	}
}

} // namespace kvmxdp::test
