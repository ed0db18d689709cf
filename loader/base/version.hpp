#pragma once
// What `kvmxdp --version` and `status --json` report: CMake's project
// version, and `git describe` of the source tree it was built from where that
// was a git checkout (empty otherwise: a tarball, or no git installed).

#include <string>

namespace kvmxdp {

const char *project_version();
const char *git_describe();
// "0.1.0 (git ab084c5-dirty)" or "0.1.0".
std::string version_string();

} // namespace kvmxdp
