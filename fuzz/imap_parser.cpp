// libFuzzer target: the IMAP command parser, differentially: the same bytes
// fed at once and fed one byte at a time must give the same results (as
// parser.hpp promises). Byte 0 selects small limits.
#include "fuzz_common.hpp"
#include "protocols/imap/parser.hpp"

namespace imap = portier::protocols::imap;

namespace {

void render(const imap::Arg& a, std::string& out) {
  out += static_cast<char>('0' + static_cast<int>(a.type));
  out += std::to_string(a.value.size()) + ":" + a.value;
  if (a.type == imap::Arg::Type::List) {
    out += "(";
    for (const auto& x : a.list) render(x, out);
    out += ")";
  }
}

/// Runs the parser over `in` in pieces of `step` bytes (0 = all at once).
std::string run(std::string_view in, size_t step, imap::CommandParser::Limits lim) {
  imap::CommandParser p(lim);
  std::string trace, buf;
  size_t fed = 0;
  for (int guard = 0; guard < 1 << 20; ++guard) {
    size_t used = 0;
    auto r = p.parse(buf, used);
    FUZZ_CHECK(used <= buf.size(), "consumed more than given", "");
    buf.erase(0, used);
    using R = imap::CommandParser::Result;
    switch (r) {
      case R::NeedMore:
        FUZZ_CHECK(buf.empty(), "NeedMore with unconsumed bytes", buf);
        if (fed >= in.size()) return trace;
        {
          size_t n = step ? std::min(step, in.size() - fed) : in.size() - fed;
          buf.append(in.substr(fed, n));
          fed += n;
        }
        break;
      case R::Continuation:
        trace += "+;";
        break;
      case R::Command: {
        auto& c = p.command();
        trace += "C" + std::to_string(c.tag.size()) + ":" + c.tag + std::to_string(c.name.size()) +
                 ":" + c.name + "[";
        for (const auto& a : c.args) render(a, trace);
        if (c.id) {  // a streamed ID: the verdict and the kept pairs
          trace += "id" + std::to_string(c.id->valid) + std::to_string(c.id->nil) +
                   std::to_string(c.id->pairs_seen) + ":";
          for (const auto& pr : c.id->pairs)
            trace += pr.key + "=" + std::to_string(pr.nil) + std::to_string(pr.truncated) + pr.value + ",";
        }
        trace += "];";
        break;
      }
      case R::EmptyLine:
        trace += "E;";
        break;
      case R::Error:
        trace += "X" + std::to_string(static_cast<int>(p.error())) + p.error_tag() +
                 (p.fatal() ? "!" : "") + ";";
        if (p.fatal()) return trace;
        break;
    }
  }
  portier::fuzz::fail("parser loops", "");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  imap::CommandParser::Limits lim;
  if (data[0] & 1) lim = {64, 100, 300};
  std::string_view in = portier::fuzz::as_text(data + 1, size - 1);
  std::string whole = run(in, 0, lim);
  std::string bytewise = run(in, 1, lim);
  FUZZ_CHECK(whole == bytewise, "byte-at-a-time differs from all-at-once", whole + "\n---\n" + bytewise);
  return 0;
}
