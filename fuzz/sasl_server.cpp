// libFuzzer target: SASL server mechanisms (PLAIN, LOGIN, OAUTHBEARER, XOAUTH2)
// fed arbitrary responses.
// Input: byte 0 bits 0 and 2 the mechanism, bit1 initial response given;
// then the initial response and the responses, each as a libFuzzer
// "random length string" (FuzzedDataProvider).
// Invariants: Done yields the mechanism's canonical name and an authcid;
// PLAIN's authcid/password hold no NUL; an OAuth token is a non-empty
// printable word; step() after Done/Failed fails;
// Failed carries an error that does not hold the password.
#include <fuzzer/FuzzedDataProvider.h>

#include "fuzz_common.hpp"
#include "sasl/sasl.hpp"

using portier::fuzz::fail;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  const uint8_t f = in.ConsumeIntegral<uint8_t>();
  constexpr std::string_view kMechs[] = {"PLAIN", "LOGIN", "OAUTHBEARER", "XOAUTH2"};
  const std::string_view mech = kMechs[(f & 1) | ((f >> 1) & 2)];
  const bool plain = mech == "PLAIN";
  const bool oauth = mech.size() > 5;
  auto m = portier::sasl::make_server_mech(mech);
  FUZZ_CHECK(m != nullptr, "make_server_mech", "");
  std::optional<std::string> ir;
  if (f & 2) ir = in.ConsumeRandomLengthString(4096);
  portier::sasl::Step st = ir ? m->start(std::string_view(*ir)) : m->start(std::nullopt);
  for (int i = 0; i < 8 && st.status == portier::sasl::Status::Continue; ++i) {
    std::string r = in.ConsumeRandomLengthString(4096);
    st = m->step(r);
  }
  if (st.status == portier::sasl::Status::Continue) return 0;
  if (st.status == portier::sasl::Status::Done) {
    const auto& c = m->credentials();
    FUZZ_CHECK(c.mech == mech, "credentials().mech", c.mech);
    FUZZ_CHECK(!c.authcid.empty(), "Done without authcid", "");
    if (oauth) {
      FUZZ_CHECK(!c.password.empty(), "empty OAuth token", "");
      for (char ch : c.password.view())
        FUZZ_CHECK(ch > 0x20 && ch < 0x7f, "OAuth token not printable", "");
    }
    if (plain) {
      FUZZ_CHECK(c.authcid.find('\0') == std::string::npos, "NUL in PLAIN authcid", c.authcid);
      FUZZ_CHECK(c.password.view().find('\0') == std::string::npos, "NUL in PLAIN password", "");
    }
  } else {
    FUZZ_CHECK(!st.error.empty(), "Failed without error", "");
  }
  auto again = m->step("more");
  FUZZ_CHECK(again.status == portier::sasl::Status::Failed, "step() after the end did not fail", "");
  return 0;
}
