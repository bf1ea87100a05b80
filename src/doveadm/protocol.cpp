#include "doveadm/protocol.hpp"

#include <openssl/crypto.h>

#include <charconv>

#include "core/base64.hpp"
#include "core/text.hpp"

namespace portier::doveadm {

namespace {

std::vector<std::string_view> split_tabs(std::string_view s) {
  std::vector<std::string_view> out;
  size_t start = 0;
  for (;;) {
    size_t t = s.find('\t', start);
    out.push_back(s.substr(start, t == std::string_view::npos ? std::string_view::npos : t - start));
    if (t == std::string_view::npos) return out;
    start = t + 1;
  }
}

}  // namespace

std::optional<unsigned> parse_version(std::string_view line) {
  auto f = split_tabs(line);
  if (f.size() != 4 || f[0] != "VERSION" || f[1] != "doveadm-server" || f[2] != "1") return std::nullopt;
  unsigned minor = 0;
  auto [p, ec] = std::from_chars(f[3].data(), f[3].data() + f[3].size(), minor);
  if (ec != std::errc() || p != f[3].data() + f[3].size() || f[3].empty()) return std::nullopt;
  return minor;
}

std::string server_greeting(unsigned minor) {
  if (minor == 0) return "-\n";
  return "VERSION\tdoveadm-client\t1\t" + std::to_string(minor) + "\n-\n";
}

std::string client_version(unsigned minor) {
  return "VERSION\tdoveadm-server\t1\t" + std::to_string(minor) + "\n";
}

bool check_plain(std::string_view line, std::string_view password) {
  constexpr std::string_view kPrefix = "PLAIN\t";
  if (line.substr(0, kPrefix.size()) != kPrefix) return false;
  auto decoded = core::base64_decode(line.substr(kPrefix.size()));
  if (!decoded) return false;
  core::Secret plain = core::Secret::take(*decoded);
  std::string_view v = plain.view();
  // authzid \0 authcid \0 password
  size_t a = v.find('\0');
  if (a == std::string_view::npos) return false;
  size_t b = v.find('\0', a + 1);
  if (b == std::string_view::npos) return false;
  std::string_view authzid = v.substr(0, a);
  std::string_view authcid = v.substr(a + 1, b - a - 1);
  std::string_view given = v.substr(b + 1);
  if (!authzid.empty() || authcid != "doveadm" || password.empty()) return false;
  return given.size() == password.size() && CRYPTO_memcmp(given.data(), password.data(), given.size()) == 0;
}

core::Secret plain_line(std::string_view password) {
  core::Secret raw;
  raw.append(std::string_view("\0doveadm\0", 9));
  raw.append(password);
  std::string b64 = core::base64_encode(raw.view());
  core::Secret line("PLAIN\t");
  line.append(b64);
  line.push_back('\n');
  core::Secret wipe = core::Secret::take(b64);  // wipes the encoded copy
  return line;
}

std::string tab_unescape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\001' || i + 1 == s.size()) {
      out.push_back(s[i]);
      continue;
    }
    switch (s[++i]) {
      case '0': out.push_back('\0'); break;
      case '1': out.push_back('\001'); break;
      case 't': out.push_back('\t'); break;
      case 'r': out.push_back('\r'); break;
      case 'n': out.push_back('\n'); break;
      default: out.push_back(s[i]); break;
    }
  }
  return out;
}

std::optional<Command> parse_command(std::string_view line) {
  auto f = split_tabs(line);
  if (f.size() < 3) return std::nullopt;
  Command c;
  c.flags = tab_unescape(f[0]);
  c.user = tab_unescape(f[1]);
  c.name = tab_unescape(f[2]);
  for (size_t i = 3; i < f.size(); ++i) c.args.push_back(tab_unescape(f[i]));
  return c;
}

std::string render_command(const Command& c, std::string_view user) {
  std::string out;
  core::append_tabescaped(out, c.flags);
  out.push_back('\t');
  core::append_tabescaped(out, user);
  out.push_back('\t');
  core::append_tabescaped(out, c.name);
  for (const auto& a : c.args) {
    out.push_back('\t');
    core::append_tabescaped(out, a);
  }
  out.push_back('\n');
  return out;
}

void ReplyScanner::scan_payload(std::string_view d) {
  for (char ch : d) {
    if (state_ == State::Output) {
      if (ch == '\n') state_ = State::Status;
    } else if (state_ == State::Status) {
      if (ch == '\n') {
        state_ = State::Done;
        return;
      }
      if (status_.size() >= 1024) {
        failed_ = true;
        return;
      }
      status_.push_back(ch);
    }
  }
}

size_t ReplyScanner::feed(std::string_view data) {
  if (!multiplex_) {
    size_t i = 0;
    // Output: skip to the first LF quickly.
    if (state_ == State::Output) {
      size_t lf = data.find('\n');
      if (lf == std::string_view::npos) return data.size();
      state_ = State::Status;
      i = lf + 1;
    }
    for (; i < data.size() && state_ == State::Status && !failed_; ++i) scan_payload(data.substr(i, 1));
    return done() ? i : data.size();
  }
  size_t i = 0;
  while (i < data.size() && !done() && !failed_) {
    if (header_have_ < 5) {
      header_[header_have_++] = static_cast<unsigned char>(data[i++]);
      if (header_have_ == 5) {
        payload_main_ = header_[0] == 0;  // other channels (logs) pass through unscanned
        payload_left_ = (uint32_t{header_[1]} << 24) | (uint32_t{header_[2]} << 16) |
                        (uint32_t{header_[3]} << 8) | uint32_t{header_[4]};
        if (payload_left_ == 0) header_have_ = 0;
      }
      continue;
    }
    size_t n = std::min<size_t>(payload_left_, data.size() - i);
    if (payload_main_) scan_payload(data.substr(i, n));
    i += n;
    payload_left_ -= static_cast<uint32_t>(n);
    if (payload_left_ == 0) header_have_ = 0;
    // A packet that goes on past the status and this chunk: the reply's end
    // is not where the protocol puts it (Dovecot never does this).
    else if (done()) failed_ = true;
  }
  return i;
}

std::string error_reply(bool multiplex, std::string_view log_text, std::string_view code) {
  std::string body = "\n-";
  body.append(code);
  body.push_back('\n');
  if (!multiplex) return body;
  auto frame = [](std::string& out, char channel, std::string_view payload) {
    out.push_back(channel);
    uint32_t n = static_cast<uint32_t>(payload.size());
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>((n >> shift) & 0xff));
    out.append(payload);
  };
  std::string out;
  if (!log_text.empty()) {
    std::string log(1, '\x04');  // Dovecot's LOG_TYPE_ERROR + 1
    log.append(core::sanitize_for_log(log_text, 1024));
    log.push_back('\n');
    frame(out, kLogChannel, log);
  }
  frame(out, '\0', body);
  return out;
}

int exit_code(std::string_view status) {
  if (status == "+") return 0;
  if (status.empty() || status[0] != '-') return 75;
  std::string_view s = status.substr(1);
  struct Name { std::string_view name; int code; };
  static constexpr Name names[] = {{"TEMPFAIL", 75}, {"USAGE", 64},   {"NOUSER", 67},   {"NOPERM", 77},
                                   {"PROTOCOL", 76}, {"DATAERR", 65}, {"NOTFOUND", 68}, {"CONFIG", 78}};
  for (const auto& n : names)
    if (s == n.name) return n.code;
  int code = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), code);
  if (ec == std::errc() && p == s.data() + s.size() && !s.empty()) return code;
  return 75;
}

}  // namespace portier::doveadm
