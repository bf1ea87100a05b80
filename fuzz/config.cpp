// libFuzzer target: the TOML config loader (config::load_string).
// Invariants: `config` is set exactly when there are no errors; every error
// has a message and names the file it was given.
#include "app/registries.hpp"
#include "config/config.hpp"
#include "passdb/registry.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string kPath = "/nonexistent/fuzz/portier.toml";
  auto r = portier::config::load_string(portier::fuzz::as_text(data, size), kPath,
                                         portier::app::registries());
  FUZZ_CHECK(r.config.has_value() == r.errors.empty(), "config xor errors", "");
  for (const auto& e : r.errors) {
    FUZZ_CHECK(!e.message.empty(), "empty error message", e.to_string());
    FUZZ_CHECK(e.line >= 0 && e.column >= 0, "negative line/column", e.to_string());
  }
  return 0;
}
