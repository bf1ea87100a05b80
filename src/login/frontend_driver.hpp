#pragma once
// The client leg of the pre-login part: drives the protocol's Frontend over the
// client connection — client bytes in (through the wiped per-thread read
// buffer), replies out, STARTTLS, the pre-login timer, goodbyes bounded in
// time, and the `Disconnected: <reason> (<summary>)` line that ends a session
// that never reached the relay. The session asks it for the next login.
//
// Owns: the Frontend, the login timer. Uses: tls stream, log sink, governor
// lease (released before the last line).

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "login/backend_driver.hpp"
#include "login/governor.hpp"
#include "login/log_sink.hpp"
#include "login/login_timer.hpp"
#include "login/protocol.hpp"
#include "login/runtime.hpp"
#include "net/awaitable.hpp"
#include "tls/stream.hpp"

namespace portier::login {

/// The login attempts of a session, for the `Disconnected:` summary.
struct LoginStats {
  Clock::time_point start = Clock::now();
  unsigned attempts = 0;
  unsigned failures = 0;  // failed logins (local or backend refusals)
  std::optional<ProxyFailure> last_failure;
  std::string summary() const {
    return auth_summary(attempts, start, last_failure ? &*last_failure : nullptr);
  }
};

class FrontendDriver {
 public:
  FrontendDriver(tls::Stream& client, const Snapshot& snap, ClientInfo& ci, SessionLog& log,
                 const Abort& abort, const LoginStats& stats, Governor::Lease& conn)
      : client_(client), snap_(snap), ci_(ci), log_(log), abort_(abort), stats_(stats),
        conn_(conn), timer_(client.socket().get_executor()) {}

  Frontend& fe() { return *fe_; }
  /// Create the Frontend (after any implicit TLS handshake) and queue its
  /// greeting; `tls_ctx`: the listener's context for STARTTLS (null = none).
  void start(const Protocol& p, SSL_CTX* tls_ctx);
  /// Run the dialogue until the client has given credentials (true), or the
  /// session ended (false: closed, logged out, shutdown, timeout, TLS error).
  net::Task<bool> next_login();

  /// Connection refused by the limits: the protocol's goodbye (not on an
  /// implicit TLS listener, which has not even handshaken).
  net::Task<void> refuse(const Protocol& p, bool implicit_tls, std::string_view text);
  /// max_auth_attempts reached: write what is queued, then the goodbye.
  net::Task<void> too_many_failures();
  /// The passdb ended the connection with a failed login (auth_http without
  /// Auth-Wait, as nginx): write the queued reply (bounded), then close.
  net::Task<void> close_after_failure();
  /// Shutdown, login timeout or a vanished client: the protocol's last words
  /// where someone listens, then the `Disconnected:` line.
  net::Task<void> cut_short(bool client_gone, std::string_view other_reason);
  /// Close the client and log `Disconnected: <reason> (<summary>)`.
  void end(std::string_view reason);

  /// Run `on_expiry` after `d` (login.client_timeout); disarm() stops it.
  void arm(std::chrono::milliseconds d, std::function<void()> on_expiry) {
    timer_.arm(d, std::move(on_expiry));
  }
  void disarm() { timer_.disarm(); }

 private:
  enum class Next { Continue, Login, End };
  net::Task<bool> flush();
  /// Before a goodbye after a failed login: a failure challenge that is out
  /// gets its answer first, so the final reply precedes the goodbye. False:
  /// the session already ended.
  net::Task<bool> read_failure_answer();
  net::Task<void> goodbye();
  net::Task<Next> read();
  net::Task<Next> start_tls();

  tls::Stream& client_;
  const Snapshot& snap_;
  ClientInfo& ci_;
  SessionLog& log_;
  const Abort& abort_;
  const LoginStats& stats_;
  Governor::Lease& conn_;
  LoginTimer timer_;
  std::unique_ptr<Frontend> fe_;
  SSL_CTX* tls_ctx_ = nullptr;  // owned by the snapshot
};

}  // namespace portier::login
