// libFuzzer target: ManageSieve BackendLogin fed arbitrary backend lines.
#include "backend_driver.hpp"
#include "protocols/managesieve/backend_login.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return portier::fuzz::run_backend(
      [](const portier::login::BackendLoginParams& p, unsigned) {
        return std::make_unique<portier::protocols::managesieve::BackendLogin>(p);
      },
      true, data, size);
}
