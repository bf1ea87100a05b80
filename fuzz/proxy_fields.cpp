// libFuzzer target: the proxy field parser (passdb::parse_proxy_fields).
// Input: first line = the user name, the rest = extra fields as in a
// passwd-file ("proxy host=... port=... pass=...").
// Invariants: exactly one of fields / error; a proxy result has a host and a
// port; destuser (unless defaulted from such a user name), pass and master
// hold no CR, LF or NUL; the error never holds pass's value.
#include "fuzz_common.hpp"
#include "passdb/proxy_fields.hpp"
#include "passdb/reply.hpp"

using portier::fuzz::contains;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in = portier::fuzz::as_text(data, size);
  size_t nl = in.find('\n');
  portier::passdb::Reply reply;
  reply.user = std::string(in.substr(0, nl));
  std::string_view rest = nl == std::string_view::npos ? std::string_view{} : in.substr(nl + 1);
  reply.fields = portier::passdb::parse_extra_fields(rest);
  auto r = portier::passdb::parse_proxy_fields(reply, 143, 993);
  FUZZ_CHECK(r.fields.has_value() == r.error.empty(), "fields xor error", r.error);
  if (r.fields) {
    const auto& f = *r.fields;
    if (f.proxy) {
      FUZZ_CHECK(!f.host.empty(), "proxy without host", "");
      FUZZ_CHECK(f.port != 0, "proxy without port", f.host);
    }
    const std::string_view bad("\r\n\0", 3);
    // destuser defaults to the user name, which the passdb matched exactly.
    if (reply.user.find_first_of(bad) == std::string::npos)
      FUZZ_CHECK(f.destuser.find_first_of(bad) == std::string::npos, "destuser has CR/LF/NUL",
                 f.destuser);
    FUZZ_CHECK(!f.pass || f.pass->find_first_of(bad) == std::string::npos, "pass has CR/LF/NUL", "");
    FUZZ_CHECK(f.master.find_first_of(bad) == std::string::npos, "master has CR/LF/NUL", f.master);
    return 0;
  }
  // pass is secret: with its value replaced by a marker no message template
  // holds, the error must not show the marker.
  if (reply.has("pass") && !contains(in, "S3cr3t")) {
    reply.set("pass", "S3cr3t\x01MARK");
    auto r2 = portier::passdb::parse_proxy_fields(reply, 143, 993);
    FUZZ_CHECK(!contains(r2.error, "S3cr3t"), "pass value in error", r2.error);
  }
  return 0;
}
