#pragma once
// Sibling services: protocols served on a listener that are not logins
// (LMTP today; doveadm or others later). A listener whose `protocol` names a
// sibling service hands each accepted connection to the service's start
// function instead of a login Session; the service reuses the worker, the
// config Snapshot (passdb chain, TLS contexts), the per-worker registry (so
// shutdown reaches it) and the Governor.
//
// Owns: the hook's vocabulary only. The table of services is app/'s
// (app/registries.cpp `sibling_services()`), so login/ never depends on a
// service. Adding a service = its module + one line in that table.

#include <asio/ip/tcp.hpp>
#include <cstdint>
#include <memory>
#include <string_view>

#include "login/governor.hpp"
#include "login/runtime.hpp"
#include "login/session.hpp"
#include "net/socket.hpp"

namespace portier::login {

/// What a sibling service gets for one accepted connection (worker thread).
struct SiblingConnection {
  asio::ip::tcp::socket socket;
  net::Endpoints endpoints;
  std::shared_ptr<const Snapshot> snapshot;
  SessionRegistry& registry;  ///< register a Stoppable for shutdown
  Governor& governor;
};

struct SiblingService {
  std::string_view name;  ///< the listener `protocol` value, e.g. "lmtp"
  uint16_t default_port;  ///< used when the listener has no `port`
  /// Take the connection (worker thread; must not block).
  void (*start)(SiblingConnection conn);
};

}  // namespace portier::login
