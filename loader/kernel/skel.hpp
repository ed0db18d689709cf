// SPDX-License-Identifier: GPL-2.0
// The one owner of a libbpf skeleton (the kvmxdp_tc, kvmxdp_xdp and
// kvmxdp_host objects bpftool generates): open on construction, destroy on
// destruction, maps and programs by name, and the one way two objects share
// their maps.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/error.hpp"
#include "kernel/maps.hpp"

struct bpf_map;
struct bpf_object;

namespace kvmxdp {

// What every skeleton offers, whatever its programs.
class SkelObject {
public:
	virtual ~SkelObject() = default;
	SkelObject(const SkelObject &) = delete;
	SkelObject &operator=(const SkelObject &) = delete;

	const std::string &name() const { return name_; }
	bpf_map *map(const char *name) const;
	// The object's own maps: all but libbpf's internal ones (.rodata,
	// .bss), which no other object shares and nothing pins.
	std::vector<std::string> map_names() const;
	int map_fd(const char *name) const;
	// The map as this object creates it (type, sizes, max_entries now).
	MapInfo map_spec(const char *name) const;
	int prog_fd(const char *name) const;
	// Before load(): the kernel fixes the map size at creation.
	void set_max_entries(const char *map, uint32_t n);
	// Before load(): use an existing (pinned) map instead of creating one
	// (libbpf dups fd: the caller's may close).
	void reuse_map(const char *map, int fd);
	// Before load(): every map of this object but `except` becomes the
	// map of the same name of `from` (loaded), so that both objects'
	// programs see one state.  A map `from` lacks is an error.
	void reuse_maps_from(const SkelObject &from, const std::vector<std::string> &except = {});

protected:
	explicit SkelObject(std::string name)
		: name_(std::move(name))
	{
	}
	bpf_object *obj_ = nullptr;

private:
	std::string name_;
};

// T: a bpftool skeleton (its C++ members T::open, T::load, T::destroy).
template <typename T>
class Skel : public SkelObject {
public:
	explicit Skel(const char *name)
		: SkelObject(name)
		, skel_(T::open())
	{
		if (!skel_)
			throw_errno("open", std::string("BPF skeleton ") + name);
		obj_ = skel_->obj;
	}
	~Skel() override { T::destroy(skel_); }

	T *operator->() const { return skel_; }
	T *get() const { return skel_; }
	// libbpf's -errno, 0 when loaded: for callers that explain a failure
	// in their own words.
	int try_load() { return T::load(skel_); }
	void load() { check_libbpf(try_load(), "load BPF object", name()); }

private:
	T *skel_;
};

// The name of a loaded program, "" if there is none with that id.
std::string prog_name_by_id(uint32_t id);

} // namespace kvmxdp
