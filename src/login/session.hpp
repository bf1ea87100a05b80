#pragma once
// One client session: the coroutine that drives a protocol Frontend, the local
// authentication, the backend login (with retries and timeouts) and finally
// the relay. Lives on one worker thread for its whole life.

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/thread_pool.hpp>
#include <chrono>
#include <cstdint>
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

/// One live session as the admin API lists it (built on its worker thread).
struct SessionRow {
  uint64_t id = 0;          // process-unique, never reused
  std::string user;         // empty before the client gave one
  std::string protocol;     // "imap"
  std::string src_ip;
  uint16_t src_port = 0;
  std::string dest;         // "127.0.0.1:143" / "host[10.0.0.5]:143"; empty before the backend login
  std::string dest_ip;
  uint16_t dest_port = 0;
  std::string state;        // "relaying", the proxy state ("id+login/banner"), "connecting" or "prelogin"
  std::chrono::system_clock::time_point since;
  uint64_t in = 0;          // client -> backend bytes (relaying)
  uint64_t out = 0;         // backend -> client bytes (relaying)
};

/// Split a destination as log lines show it ("127.0.0.1:143", "[::1]:143",
/// "host[10.0.0.5]:143") into the row's dest_ip/dest_port.
void set_dest(SessionRow& row, std::string dest);

/// A process-unique session id (never 0, never reused).
uint64_t next_session_id();

/// What shutdown and the admin API need of a pre-login session.
class Stoppable {
 public:
  /// Process shutdown (worker thread). Without `force`, a login talking to a
  /// backend is left to finish.
  virtual void stop(bool force) = 0;
  /// Admin kick (worker thread): the protocol's goodbye, then close.
  virtual void kick() = 0;
  virtual uint64_t id() const = 0;
  virtual SessionRow row() const = 0;

 protected:
  ~Stoppable() = default;
};

/// A live relay and its row (bytes are read from the relay when listed).
struct LiveRelay {
  relay::Relay* relay = nullptr;
  SessionRow row;
};

/// Per-worker bookkeeping of live sessions (shutdown, admin list/kick).
/// Worker thread only.
struct SessionRegistry {
  std::unordered_set<Stoppable*> sessions;
  /// Live relays (post-login), keyed by their log context.
  std::unordered_map<const void*, LiveRelay> relays;
  bool shutting_down = false;
  /// Every live session's row.
  std::vector<SessionRow> rows() const;
  /// Kick the sessions whose ids are in `ids` (those still alive); returns how many.
  size_t kick(const std::unordered_set<uint64_t>& ids);
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
  /// Its position in cfg.listeners (Snapshot::server_ctx_for: per-listener
  /// client-certificate settings; listeners are bound once, so a reload
  /// applies the [[listener]] table at the same position).
  size_t index = 0;
};

/// Accepted connection → complete session. `auth_pool` runs password checks.
void start_session(asio::ip::tcp::socket socket, const net::Endpoints& endpoints,
                   std::shared_ptr<const Snapshot> snapshot,
                   const ListenerInfo& listener, SessionRegistry& registry,
                   asio::thread_pool& auth_pool, Governor& governor);

}  // namespace portier::login
