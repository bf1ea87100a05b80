// libFuzzer target: strict base64 decoding (core/base64).
// Invariants: a successful decode re-encodes to exactly the input (strict
// RFC 4648 base64 is canonical); encode() of any bytes decodes back to them.
#include "core/base64.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in = portier::fuzz::as_text(data, size);
  if (auto d = portier::core::base64_decode(in)) {
    FUZZ_CHECK(portier::core::base64_encode(*d) == in, "decode/encode round trip", in);
  }
  std::string e = portier::core::base64_encode(in);
  FUZZ_CHECK(e.size() == (in.size() + 2) / 3 * 4, "encoded length", e);
  auto back = portier::core::base64_decode(e);
  FUZZ_CHECK(back && *back == in, "encode/decode round trip", e);
  return 0;
}
