// SPDX-License-Identifier: GPL-2.0
#include "control/resume.hpp"

#include "base/error.hpp"
#include "kvmxdp/abi.h"

namespace kvmxdp {

namespace {

// A kernel object we create must match what the loaded program expects;
// pinned maps from another build are refused rather than misread.
void check_reusable(const MapInfo &have, const MapInfo &want, const std::string &path)
{
	if (std::string m = layout_mismatch(have, {want.type, want.key_size, want.value_size});
	    !m.empty())
		throw Error("pinned map " + path + " has " + m +
			    ": run 'kvmxdp detach' first (drops conntrack state)");
	if (have.max_entries != want.max_entries)
		throw Error("pinned map " + path + " has " + std::to_string(have.max_entries) +
			    " entries, requested " + std::to_string(want.max_entries) +
			    ": resize needs 'kvmxdp detach' first (drops conntrack state)");
}

} // namespace

MapResumeRule resume_rule(const std::string &map)
{
	for (const MapResumeRule &r : kResumeTable)
		if (map == r.map)
			return r;
	return {nullptr, {}, SizeFrom::Object, ReplaceIf::Never, false, nullptr, nullptr};
}

MapLayout pinned_layout(const char *map)
{
	for (const MapResumeRule &r : kResumeTable)
		if (std::string(map) == r.map)
			return r.layout;
	throw Error(std::string("no layout for map ") + map + " (kResumeTable)");
}

ResumeDecision decide_resume(const MapResumeRule &rule, const MapInfo &spec,
			     const std::optional<PinnedMap> &pinned, const MapSizes &sizes)
{
	MapInfo want = spec;
	switch (rule.size) {
	case SizeFrom::Object:
		break;
	case SizeFrom::CtSize:
		// Without --ct-size, a resume adopts the pinned size; a map of
		// kvx_ct's size not pinned yet (kvx_ovl, new in ABI 13, over an
		// older kvx_ct) takes the pinned kvx_ct's, not the default.
		want.max_entries = sizes.ct	   ? *sizes.ct :
				   pinned	   ? pinned->info.max_entries :
				   sizes.ct_pinned ? *sizes.ct_pinned :
						     sizes.ct_default;
		break;
	case SizeFrom::BindSize:
		want.max_entries = sizes.bind ? *sizes.bind :
				   pinned     ? pinned->info.max_entries :
						sizes.bind_default;
		break;
	case SizeFrom::Subnet:
		want.max_entries = sizes.guests;
		break;
	case SizeFrom::Ct6Size:
		want.max_entries = !sizes.ipv6	   ? 1 :
				   sizes.ct	   ? *sizes.ct :
				   sizes.ct_pinned ? *sizes.ct_pinned :
						     sizes.ct_default;
		break;
	case SizeFrom::Bind6Size:
		want.max_entries = !sizes.ipv6	     ? 1 :
				   sizes.bind	     ? *sizes.bind :
				   sizes.bind_pinned ? *sizes.bind_pinned :
						       sizes.bind_default;
		break;
	case SizeFrom::NdSize:
		want.max_entries = sizes.ipv6 ? KVX_ND_DEFAULT_SIZE : 1;
		break;
	}
	if (!pinned)
		return {ResumeAction::Create, want.max_entries, ""};

	const MapInfo &have = pinned->info;
	const std::string &path = pinned->path;
	if (pinned->abi_version)
		if (std::string m = abi_version_mismatch(*pinned->abi_version); !m.empty())
			throw Error("pinned " + path + " is of " + m +
				    ": run 'kvmxdp detach' first (drops conntrack state)");
	switch (rule.replace) {
	case ReplaceIf::Never:
		break;
	case ReplaceIf::Resized:
		if (same_layout(have, want) && have.max_entries != want.max_entries) {
			std::string note;
			if (rule.resized_note)
				note = path + " has " + std::to_string(have.max_entries) + " " +
				       rule.entries + ", this kvmxdp " +
				       std::to_string(want.max_entries) + ": " + rule.resized_note;
			return {ResumeAction::Replace, want.max_entries, note};
		}
		break;
	case ReplaceIf::Differs:
		// Flags too: counters pinned without BPF_F_MMAPABLE (before
		// version 6) could not be corrected atomically (control/gc.cpp).
		if (!same_layout(have, want) || have.max_entries != want.max_entries ||
		    have.map_flags != want.map_flags)
			return {ResumeAction::Replace, want.max_entries, ""};
		break;
	case ReplaceIf::Layout:
		if (have.type == want.type && have.key_size == want.key_size &&
		    (have.value_size != want.value_size || have.max_entries != want.max_entries)) {
			std::string note;
			if (rule.resized_note)
				note = path + " has " + std::to_string(have.max_entries) + " " +
				       rule.entries + " of " + std::to_string(have.value_size) +
				       " bytes, this kvmxdp " + std::to_string(want.max_entries) +
				       " of " + std::to_string(want.value_size) + " bytes: " +
				       rule.resized_note;
			return {ResumeAction::Replace, want.max_entries, note};
		}
		break;
	case ReplaceIf::ValueSize:
		if (have.type == want.type && have.key_size == want.key_size &&
		    have.max_entries == want.max_entries && have.value_size != want.value_size)
			return {ResumeAction::Replace, want.max_entries,
				path + " is of ABI version " +
					std::to_string(pinned->abi_version.value_or(0)) + " (" +
					std::to_string(have.value_size) +
					" bytes): replaced, conntrack kept"};
		break;
	}
	check_reusable(have, want, path);
	return {ResumeAction::Reuse, want.max_entries, ""};
}

} // namespace kvmxdp
