// libFuzzer target: the passwd-file parser (passdb::parse_passwd_file) and
// the extra-fields parser (passdb::parse_extra_fields).
// Invariants: user names are non-empty and hold no ':' or line break;
// errors name a line inside the input and never hold a stored password;
// extra fields never have an empty key.
#include "fuzz_common.hpp"
#include "passdb/drivers/passwd_file/passwd_file.hpp"
#include "passdb/reply.hpp"

using portier::fuzz::contains;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in = portier::fuzz::as_text(data, size);
  auto d = portier::passdb::parse_passwd_file(in);
  size_t lines = 1;
  for (char c : in) lines += c == '\n';
  for (const auto& [user, e] : d.users) {
    FUZZ_CHECK(!user.empty(), "empty user name", "");
    FUZZ_CHECK(user.find_first_of(":\n") == std::string::npos, "bad user name", user);
    for (const auto& [k, v] : e.fields) FUZZ_CHECK(!k.empty(), "empty field key", v);
  }
  for (const auto& err : d.errors)
    FUZZ_CHECK(err.line >= 1 && static_cast<size_t>(err.line) <= lines, "error line number",
               std::to_string(err.line));
  // A stored password is secret: no error message may quote it. Replace one
  // password that occurs once in the input by a marker no message template
  // holds, parse again and look for the marker.
  static constexpr std::string_view kMarker = "S3cr3t\x01MARK";
  for (const auto& [user, e] : d.users) {
    if (contains(in, "S3cr3t")) break;  // the fuzzer learnt the marker
    if (e.password.empty() || e.password.find_first_of(": \n\r\t") != std::string::npos ||
        portier::fuzz::count(in, e.password) != 1)
      continue;
    std::string in2(in);
    in2.replace(in2.find(e.password), e.password.size(), kMarker);
    for (const auto& err : portier::passdb::parse_passwd_file(in2).errors)
      FUZZ_CHECK(!contains(err.message, "S3cr3t"), "password in error message", err.message);
    break;
  }
  for (const auto& [k, v] : portier::passdb::parse_extra_fields(in))
    FUZZ_CHECK(!k.empty(), "parse_extra_fields: empty key", v);
  return 0;
}
