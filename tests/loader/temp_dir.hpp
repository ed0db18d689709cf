// SPDX-License-Identifier: GPL-2.0
// A private temporary directory for a test, removed with its contents.
#pragma once

#include <stdlib.h>

#include <cstdlib>
#include <string>

namespace kvmxdp::test {

class TempDir {
public:
	TempDir()
	{
		char tmpl[] = "/tmp/kvx-unit-XXXXXX";
		path_ = ::mkdtemp(tmpl);
	}
	~TempDir() { std::system(("rm -rf '" + path_ + "'").c_str()); }
	TempDir(const TempDir &) = delete;
	TempDir &operator=(const TempDir &) = delete;
	const std::string &path() const { return path_; }

private:
	std::string path_;
};

} // namespace kvmxdp::test
