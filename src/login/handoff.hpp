#pragma once
// The hand-off from a finished login to the relay: the backend's success
// reply (and any backend bytes behind it) go to the client, the client's
// pipelined bytes to the backend, both buffers are wiped, "Started proxying"
// is logged, and the two connections move into a self-owning relay::Relay
// together with the governor leases and the log context it needs for its
// last line. Nothing else of the session survives.
//
// The relay is registered in the worker's SessionRegistry with the session's
// row (for the admin API's list and kick).
//
// Owns: nothing after the call. Uses: relay, governor leases, log sink.

#include <string>

#include "login/backend_driver.hpp"
#include "login/governor.hpp"
#include "login/log_sink.hpp"
#include "login/session.hpp"
#include "net/awaitable.hpp"
#include "relay/relay.hpp"
#include "tls/stream.hpp"

namespace portier::login {

/// The bytes the client gets first: the rendered success reply, then what the
/// backend sent behind its success line (`leftover`, which is consumed).
std::string client_first_bytes(const std::string& reply, std::string& leftover);

struct Handoff {
  tls::Stream& client;
  tls::Stream& backend;
  std::string to_client;   // client_first_bytes()
  std::string to_backend;  // the client's pipelined input
  SessionLog& session_log;
  events::ProxyStarted started;  // logged once both sides are written ...
  Clock::time_point proxy_start; // ... with the time since the backend login began
  Governor::Lease conn;    // the connection count, under the key it was admitted with
  Governor::Lease user;    // the per-user count (may be empty)
  SessionRegistry& registry;
  relay::Options options;
  SessionRow row;          // what the admin API lists while relaying

  /// Write both sides, then start the relay (or end at once on a write error
  /// or when the process is stopping). Both buffers are wiped.
  net::Task<void> run(const Abort& abort);
};

}  // namespace portier::login
