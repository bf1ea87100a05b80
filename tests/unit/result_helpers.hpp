#pragma once
// Tests only: a core::Result's value, or T{} with its message in `err`
// (lets table-style tests keep one line per case).
#include <string>

#include "core/result.hpp"

namespace portier::testing_util {
template <typename T>
T made(portier::core::Result<T> r, std::string& err) {
  if (!r) {
    err = r.error().message;
    return T{};
  }
  return std::move(*r);
}
}  // namespace portier::testing_util
