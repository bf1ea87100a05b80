#pragma once
// The one error style: a value or an error, never a value plus an
// out-parameter string, a null pointer plus a message, or a bool.
//
//   core::Result<CtxPtr> make_server_context(...);
//   auto ctx = make_server_context(cert, key);
//   if (!ctx) log(ctx.error().message);   else use(*ctx);
//   core::Result<void> bind();   return core::fail("address in use");
//
// A load that reports every problem at once (config::LoadResult, with
// file:line positions) keeps its own list; everything else returns this.
// Owns: nothing. May use: std only.

#include <optional>
#include <type_traits>
#include <string>
#include <utility>
#include <variant>

namespace portier::core {

/// Why something failed: a message for logs and config errors (never a
/// secret).
struct Error {
  std::string message;
};

/// The failure of any Result: `return core::fail("...")`.
inline Error fail(std::string message) { return Error{std::move(message)}; }

template <typename T>
class [[nodiscard]] Result {
 public:
  /// From a value, or anything that converts to one (shared_ptr<Driver> →
  /// shared_ptr<Passdb>).
  template <typename U = T,
            typename = std::enable_if_t<std::is_convertible_v<U&&, T> &&
                                        !std::is_same_v<std::decay_t<U>, Error>>>
  Result(U&& value) : v_(std::in_place_index<0>, T(std::forward<U>(value))) {}
  Result(Error error) : v_(std::in_place_index<1>, std::move(error)) {}

  bool ok() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }

  T& operator*() & { return std::get<0>(v_); }
  const T& operator*() const& { return std::get<0>(v_); }
  T&& operator*() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &std::get<0>(v_); }
  const T* operator->() const { return &std::get<0>(v_); }

  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)) {}

  bool ok() const noexcept { return !error_; }
  explicit operator bool() const noexcept { return ok(); }
  const Error& error() const { return *error_; }

 private:
  std::optional<Error> error_;
};

}  // namespace portier::core
