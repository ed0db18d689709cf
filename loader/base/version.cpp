#include "base/version.hpp"

#include "kvmxdp_version.h"

namespace kvmxdp {

const char *project_version() { return KVMXDP_VERSION; }

const char *git_describe() { return KVMXDP_GIT_DESCRIBE; }

std::string version_string()
{
	std::string v = project_version();
	if (*git_describe())
		v += std::string(" (git ") + git_describe() + ")";
	return v;
}

} // namespace kvmxdp
