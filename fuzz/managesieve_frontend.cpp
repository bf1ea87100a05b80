// libFuzzer target: ManageSieve pre-login Frontend fed arbitrary client bytes.
#include "frontend_driver.hpp"
#include "protocols/managesieve/managesieve.hpp"

namespace {
const portier::fuzz::FrontendTarget kTarget{
    &portier::protocols::managesieve::kProtocol,
    true,
    {"\"IMPLEMENTATION\" \"Dovecot (Debian) Pigeonhole\"", "\"SIEVE\" \"fileinto reject\"",
     "\"SASL\" \"PLAIN LOGIN\"", "\"VERSION\" \"1.0\"", "\"XCLIENT\"",
     "OK \"Dovecot (Debian) ready.\"", "OK \"Updated\"", "\"\"", "\"\"", "OK \"Logged in.\""},
    "NO \"Authentication failed.\"\r\n",
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return portier::fuzz::run_frontend(kTarget, data, size);
}
