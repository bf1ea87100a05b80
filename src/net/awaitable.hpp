#pragma once
// Common Asio coroutine vocabulary for portier.

#include <asio/awaitable.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/use_awaitable.hpp>

namespace portier::net {

/// Completion token: co_await yields std::tuple<error_code, ...> instead of throwing.
inline constexpr auto use_nothrow = asio::experimental::as_tuple(asio::use_awaitable);

template <typename T = void>
using Task = asio::awaitable<T>;

}  // namespace portier::net
