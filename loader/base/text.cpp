// SPDX-License-Identifier: GPL-2.0
#include "base/text.hpp"

#include <algorithm>
#include <cctype>
#include <cstdio>

namespace kvmxdp {

namespace {

// Length of the well-formed UTF-8 sequence at s[i], 0 if there is none.
size_t utf8_len(const std::string &s, size_t i)
{
	auto at = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
	const unsigned char c = at(i);
	if (c < 0x80)
		return 1;
	size_t n;
	unsigned char lo = 0x80, hi = 0xbf; // range of the second byte
	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		if (c == 0xe0)
			lo = 0xa0; // overlong
		if (c == 0xed)
			hi = 0x9f; // surrogates
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		if (c == 0xf0)
			lo = 0x90; // overlong
		if (c == 0xf4)
			hi = 0x8f; // above U+10FFFF
	} else
		return 0;
	if (i + n > s.size())
		return 0;
	if (at(i + 1) < lo || at(i + 1) > hi)
		return 0;
	for (size_t k = 2; k < n; k++)
		if (at(i + k) < 0x80 || at(i + k) > 0xbf)
			return 0;
	return n;
}

// Whether the sequence of n bytes at s[i] (utf8_len) is a control
// character: C0, DEL or C1 (U+0080..U+009F, 0xc2 0x80..0x9f).
bool is_control(const std::string &s, size_t i, size_t n)
{
	const unsigned char c = static_cast<unsigned char>(s[i]);
	if (n == 1)
		return c < 0x20 || c == 0x7f;
	return n == 2 && c == 0xc2 && static_cast<unsigned char>(s[i + 1]) < 0xa0;
}

} // namespace

bool is_utf8(const std::string &s)
{
	for (size_t i = 0; i < s.size();) {
		size_t n = utf8_len(s, i);
		if (!n)
			return false;
		i += n;
	}
	return true;
}

bool is_printable_text(const std::string &s)
{
	for (size_t i = 0; i < s.size();) {
		size_t n = utf8_len(s, i);
		if (!n || is_control(s, i, n))
			return false;
		i += n;
	}
	return true;
}

namespace {

// Every byte of s[i, i + max(n, 1)) as \xNN: a control character, or one
// invalid byte.
void append_hex_bytes(std::string &out, const std::string &s, size_t i, size_t n)
{
	for (size_t k = 0; k < std::max<size_t>(n, 1); k++) {
		char buf[5];
		std::snprintf(buf, sizeof(buf), "\\x%02x", static_cast<unsigned char>(s[i + k]));
		out += buf;
	}
}

} // namespace

std::string printable(const std::string &s)
{
	std::string out;
	for (size_t i = 0; i < s.size();) {
		size_t n = utf8_len(s, i);
		if (n && !is_control(s, i, n) && s[i] != '\\') {
			out.append(s, i, n);
			i += n;
			continue;
		}
		append_hex_bytes(out, s, i, n);
		i += std::max<size_t>(n, 1);
	}
	return out;
}

std::string shell_word(const std::string &s)
{
	bool plain = !s.empty();
	for (char c : s)
		if (!std::isalnum(static_cast<unsigned char>(c)) &&
		    std::string("._-+@%=,:/").find(c) == std::string::npos)
			plain = false;
	if (plain)
		return s;
	if (is_printable_text(s)) {
		std::string q = "'";
		for (char c : s)
			q += c == '\'' ? std::string("'\\''") : std::string(1, c);
		return q + "'";
	}
	std::string q = "$'";
	for (size_t i = 0; i < s.size();) {
		size_t n = utf8_len(s, i);
		if (n && !is_control(s, i, n)) {
			if (s[i] == '\\' || s[i] == '\'')
				q += '\\';
			q.append(s, i, n);
			i += n;
			continue;
		}
		append_hex_bytes(q, s, i, n);
		i += std::max<size_t>(n, 1);
	}
	return q + "'";
}

std::string unit_instance_shell(const std::string &tmpl, const std::string &instance)
{
	const bool plain =
		!instance.empty() && instance[0] != '.' &&
		instance.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
					   "0123456789:_.") == std::string::npos;
	return plain ? tmpl + "@" + instance :
		       "\"" + tmpl + "@$(systemd-escape -- " + shell_word(instance) + ")\"";
}

} // namespace kvmxdp
