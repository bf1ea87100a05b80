#pragma once
// The post-login relay: bytes both ways until either side closes. Per
// direction it parks on "socket readable" holding no buffer, then borrows a
// pooled pipe (splice, both legs kernel-plaintext) or a pooled buffer (copy,
// any TLS leg) only while bytes move.

#include <chrono>
#include <cstdint>
#include <string>

#include "net/awaitable.hpp"
#include "tls/stream.hpp"

namespace portier::relay {

enum class EndSide { Client, Server, Proxy };

struct Result {
  EndSide side = EndSide::Client;
  std::string error;      // empty for a clean close
  uint64_t in = 0;        // client -> backend bytes
  uint64_t out = 0;       // backend -> client bytes
  std::chrono::seconds idle{0};
};

struct Options {
  bool splice = true;  // allow splice(2) when both legs are plaintext
};

/// Relay until one side closes or `stop` cancels both streams (EndSide::Proxy
/// is reported when the caller sets *stopped before cancelling).
net::Task<Result> run(tls::Stream& client, tls::Stream& backend, Options opts,
                      const bool* stopped);

}  // namespace portier::relay
