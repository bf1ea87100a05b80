#pragma once
// One client session: the coroutine that drives a protocol Frontend, the local
// authentication, the backend login (with retries and timeouts) and finally
// the relay. Lives on one worker thread for its whole life.

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/thread_pool.hpp>
#include <memory>
#include <unordered_map>
#include <unordered_set>

#include "config/config.hpp"
#include "login/governor.hpp"
#include "login/protocol.hpp"
#include "login/runtime.hpp"
#include "net/awaitable.hpp"
#include "net/socket.hpp"
#include "relay/relay.hpp"

namespace portier::login {

/// What shutdown needs of a pre-login session.
class Stoppable {
 public:
  /// Process shutdown (worker thread). Without `force`, a login talking to a
  /// backend is left to finish.
  virtual void stop(bool force) = 0;

 protected:
  ~Stoppable() = default;
};

/// Per-worker bookkeeping of live sessions (for shutdown). Worker thread only.
struct SessionRegistry {
  std::unordered_set<Stoppable*> sessions;
  /// Live relays (post-login), keyed by their log context.
  std::unordered_map<const void*, relay::Relay*> relays;
  bool shutting_down = false;
  /// Process shutdown. Not forced: relays and idle pre-login sessions end now
  /// (`Disconnected by proxy: Process shutting down`), logins talking to a
  /// backend may finish. Forced: everything ends now.
  void stop_all(bool force);
};

struct ListenerInfo {
  const Protocol* protocol = nullptr;
  config::TlsMode tls = config::TlsMode::None;
  /// The connection preface to run before the session (net/preface.hpp
  /// registry name, e.g. "haproxy"); empty = none.
  std::string_view preface;
  /// The bound address, "127.0.0.1:143" / "[::]:993": the metrics' `listener`
  /// label (storage owned by the Server).
  std::string_view name;
};

/// Accepted connection → complete session. `auth_pool` runs password checks.
void start_session(asio::ip::tcp::socket socket, const net::Endpoints& endpoints,
                   std::shared_ptr<const Snapshot> snapshot,
                   const ListenerInfo& listener, SessionRegistry& registry,
                   asio::thread_pool& auth_pool, Governor& governor);

}  // namespace portier::login
