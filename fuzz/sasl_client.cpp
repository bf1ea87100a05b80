// libFuzzer target: SASL client mechanisms fed arbitrary names, credentials
// and server challenges.
// Invariants: PLAIN's initial response is authzid NUL authcid NUL password;
// LOGIN's is empty and it answers at most two challenges (user, password);
// OAUTHBEARER/XOAUTH2 carry `auth=Bearer <password>` ^A ^A, answer at most
// two challenges, and report a failure exactly when they acknowledged one.
#include <fuzzer/FuzzedDataProvider.h>

#include "fuzz_common.hpp"
#include "sasl/oauth_client.hpp"
#include "sasl/sasl.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  static const char* const kNames[] = {"PLAIN",   "LOGIN",       "plain", "Login",
                                       "XOAUTH2", "oauthbearer", "CRAM-MD5", ""};
  std::string name = in.ConsumeBool() ? kNames[in.ConsumeIntegralInRange<size_t>(0, 7)]
                                      : in.ConsumeRandomLengthString(16);
  std::string authzid = in.ConsumeRandomLengthString(256);
  std::string authcid = in.ConsumeRandomLengthString(256);
  std::string password = in.ConsumeRandomLengthString(256);
  std::string host = in.ConsumeRandomLengthString(64);
  portier::sasl::ClientParams cp{host, in.ConsumeIntegral<uint16_t>()};
  auto m = portier::sasl::make_client_mech(name, authzid, authcid, password, cp);
  FUZZ_CHECK((m != nullptr) == portier::sasl::is_client_mech(name),
             "make_client_mech vs is_client_mech", name);
  if (!m) return 0;
  std::string ir = m->initial_response();
  bool is_plain = (name[0] | 0x20) == 'p';
  if (portier::sasl::is_oauth_client_mech(name)) {
    const std::string tail = "auth=Bearer " + password + "\x01\x01";
    FUZZ_CHECK(ir.size() >= tail.size() && ir.compare(ir.size() - tail.size(), tail.size(), tail) == 0,
               "OAuth initial response does not end in the token", ir);
    int answers = 0;
    bool acked = false;
    for (int i = 0; i < 6 && in.remaining_bytes() > 0; ++i) {
      std::string c = in.ConsumeRandomLengthString(1024);
      auto r = m->step(c);
      if (!r) break;
      ++answers;
      if (*r != ir) acked = true;
      FUZZ_CHECK(m->failure_reported() == acked, "failure_reported() vs acknowledgement", c);
    }
    FUZZ_CHECK(answers <= 2, "OAuth answered more than two challenges", "");
    return 0;
  }
  if (is_plain) {
    std::string want = authzid + '\0' + authcid + '\0' + password;
    FUZZ_CHECK(ir == want, "PLAIN initial response", ir);
  } else {
    FUZZ_CHECK(ir.empty(), "LOGIN initial response not empty", ir);
  }
  int answers = 0;
  for (int i = 0; i < 6 && in.remaining_bytes() > 0; ++i) {
    auto r = m->step(in.ConsumeRandomLengthString(1024));
    if (!r) break;
    ++answers;
  }
  if (!is_plain) FUZZ_CHECK(answers <= 2, "LOGIN answered more than two challenges", "");
  return 0;
}
