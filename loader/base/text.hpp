// SPDX-License-Identifier: GPL-2.0
// Bytes that come from the kernel or the user (interface names, paths) on
// their way into JSON, log lines and unit files.  JSON (RFC 8259) and the
// systemd journal take UTF-8 text; a name the kernel accepts may be any
// bytes but '/', ':' and whitespace.
#pragma once

#include <string>

namespace kvmxdp {

// Well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, at most
// U+10FFFF); what nlohmann::json can dump without throwing.
bool is_utf8(const std::string &s);

// Well-formed UTF-8 without control characters (C0, DEL, C1): text that
// can neither break a line nor send a terminal an escape sequence.
bool is_printable_text(const std::string &s);

// s for an error or log line: well-formed UTF-8 printable text as it is,
// every other byte (control characters, DEL, invalid UTF-8) and '\' as
// \xNN, so that a hostile name can neither break the line nor the terminal.
std::string printable(const std::string &s);

// s as one word of a shell command meant to be pasted (a fix `doctor`
// prints, a command `import` prints): as it is when it holds only
// characters no shell treats specially, else in single quotes, and where
// it holds bytes printable() would escape, in bash's $'...' with \xNN for
// them (still one line, still printable).
std::string shell_word(const std::string &s);

// The unit of template `tmpl` ("kvmxdp") for `instance` (a bridge name), for
// a command line a user pastes: "kvmxdp@virbr0" when systemd-escape would
// leave the name as it is, else "\"kvmxdp@$(systemd-escape -- 'br-lan')\""
// (a '-' would read as '/', and the unit's %I unescapes).
std::string unit_instance_shell(const std::string &tmpl, const std::string &instance);

} // namespace kvmxdp
