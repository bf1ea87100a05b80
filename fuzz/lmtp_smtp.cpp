// libFuzzer target: the LMTP proxy's sans-I/O parsers (lmtp/smtp.hpp).
// Input: lines; each is tried as a client command (MAIL/RCPT paths, XCLIENT),
// a backend reply line and DATA bytes. Invariants: parsed paths and params
// hold no CR/LF/NUL; the DATA scanner's end offset lies within the chunk
// and is just past ".\r\n"; XCLIENT lines stay within 512 bytes; xtext
// round-trips.
#include "fuzz_common.hpp"
#include "lmtp/smtp.hpp"

using namespace portier::lmtp;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in = portier::fuzz::as_text(data, size);
  ReplyParser replies;
  DataScanner scan;
  std::vector<std::pair<std::string, std::string>> attrs;
  size_t pos = 0;
  while (pos <= in.size()) {
    size_t nl = in.find('\n', pos);
    std::string_view line = in.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    Command c = parse_command(line);
    for (std::string_view kw : {"FROM:", "TO:"}) {
      if (auto p = parse_path(c.arg, kw)) {
        const std::string_view bad("\r\n\0", 3);
        FUZZ_CHECK(p->path.find_first_of(bad) == std::string::npos, "control in path", p->path);
        FUZZ_CHECK(p->params.find_first_of(bad) == std::string::npos, "control in params", p->params);
      }
    }
    if (auto x = parse_xclient(c.arg))
      for (auto& a : *x) attrs.push_back(a);
    if (replies.feed(line) != ReplyParser::Status::More) replies.take();
    auto [user, detail] = split_detail(line, "+-");
    FUZZ_CHECK(user.size() + detail.size() <= line.size(), "detail grew", std::string(line));
    FUZZ_CHECK(xtext_decode(xtext_encode(line)) == line, "xtext round trip", std::string(line));
    if (nl == std::string_view::npos) break;
    pos = nl + 1;
  }
  // DATA: the whole input in chunks of 1..16 bytes.
  size_t chunk = size ? (data[0] & 15) + 1 : 1;
  for (size_t off = 0; off < in.size(); off += chunk) {
    std::string_view part = in.substr(off, chunk);
    size_t end = scan.feed(part);
    if (end != std::string::npos) {
      FUZZ_CHECK(end >= 1 && end <= part.size(), "scanner end out of range", std::string(part));
      FUZZ_CHECK(off + end >= 3 && in.substr(off + end - 3, 3) == ".\r\n", "scanner end not after .CRLF",
                 std::string(part));
    }
  }
  for (const auto& l : xclient_lines(attrs, {"ADDR", "PORT", "HELO", "TTL", "SESSION", "LOGIN"}))
    FUZZ_CHECK(l.size() <= 512, "XCLIENT line too long", l);
  return 0;
}
