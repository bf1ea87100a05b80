#pragma once
// Backend driving: connect (source_ip, deadline), optional TLS, the protocol's
// BackendLogin machine line by line, retries of retryable failures within one
// deadline, Dovecot's fast fail for hosts that keep failing, and the checks
// before connecting (TTL, loops, unknown mechanism). The decisions are pure
// functions (precheck, next_after_failure) unit-tested without sockets; the
// BackendDriver runs them against real sockets.
//
// Owns: the backend connection and machine of one login, the proxy timer.
// Uses: net/tls streams, the protocol plug-in boundary, governor (host state),
// the session's log sink.

#include <asio/steady_timer.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "login/governor.hpp"
#include "login/log_sink.hpp"
#include "login/protocol.hpp"
#include "login/redirect.hpp"
#include "login/runtime.hpp"
#include "net/awaitable.hpp"
#include "net/deadline.hpp"
#include "passdb/proxy_fields.hpp"
#include "tls/stream.hpp"

namespace portier::login {

using Clock = std::chrono::steady_clock;

/// Why the pre-login part of a session is being cut short; shared by the
/// session (which sets it) and the drivers (which check it after each wait).
struct Abort {
  bool stopped = false;         // process shutdown (or an admin kick: `kicked` too)
  bool kicked = false;          // admin kick
  bool login_timed_out = false; // login.client_timeout fired
  bool any() const { return stopped || login_timed_out; }
};

/// "127.0.0.1:143", "[::1]:143", or "host[10.0.0.5]:143" when hostip was given.
std::string dest_text(const passdb::ProxyFields& f, const asio::ip::address& ip);

/// The PROXY protocol header (`version` 1 or 2; "" otherwise) that tells a
/// backend the client's addresses: v2 adds the SSL TLV when the client used
/// TLS and the AUTHORITY TLV when its SNI name is known.
std::string proxy_header(unsigned version, const ClientInfo& ci);

/// The checks before any connection (Dovecot's order): an unusable host IP,
/// TTL exhausted, a destination that is this very listener with the same
/// user, a proxy_mech no client mechanism implements.
std::optional<ProxyFailure> precheck(const passdb::ProxyFields& f, bool ip_ok,
                                     const asio::ip::address& ip, const ClientInfo& ci,
                                     const BackendLoginParams& params, std::string_view login_user);

/// Where a backend referral sends the login next (Dovecot 2.4 without
/// proxy_redirect_reauth): `target` is `[user@]host[:port]` (the user is
/// ignored; an IPv6 host in brackets); the host must be an IP literal (no DNS
/// lookups), the port defaults to the current one; a destination this login
/// already tried, or a TTL that allows no further hop, is a loop. `hops` =
/// redirects followed so far.
std::variant<asio::ip::tcp::endpoint, ProxyFailure> redirect_endpoint(
    std::string_view target, const asio::ip::tcp::endpoint& current,
    const std::vector<asio::ip::tcp::endpoint>& visited, const ClientInfo& ci, unsigned hops);

/// Cut the next backend line out of `buf` (LF-terminated, one CR before it
/// dropped) into `line`; Dovecot's pre-login limit of 4096 bytes per line.
enum class LineCut { Line, NeedMore, TooLong };
inline constexpr size_t kBackendMaxLine = 4096;
LineCut next_backend_line(std::string& buf, std::string& line);

/// After a failed attempt: retry (1 s later) or give up.
enum class AfterFailure { Retry, GiveUp };
inline constexpr auto kRetryDelay = std::chrono::milliseconds(1000);
inline constexpr auto kRetryMinRemaining = std::chrono::milliseconds(1100);
AfterFailure next_after_failure(FailureType type, unsigned reconnects, unsigned max_reconnects,
                                Clock::duration remaining);
/// The deadline of a whole backend login: passdb proxy_timeout or the
/// configured one, clamped so that `now + timeout` cannot overflow.
Clock::duration login_timeout(const passdb::ProxyFields& f, std::chrono::milliseconds configured);

class BackendDriver {
 public:
  BackendDriver(tls::Stream& client, const Snapshot& snap, Governor& gov, SessionLog& log,
                const Abort& abort, Clock::time_point session_start);

  enum class Result { LoggedIn, Failed, Aborted };
  /// Log in at the backend `f` names, retrying within the deadline (all log
  /// lines of it are emitted here). On LoggedIn, backend() holds the
  /// connection, machine() the client reply and leftover() the backend's
  /// bytes behind it. On Failed, failure() is final and the frontend's reply
  /// is the session's to render. Aborted: shutdown, login timeout or the
  /// client left; failure() may hold the last attempt's failure.
  /// `reauth` ([login] proxy_redirect_reauth): a backend referral asks the
  /// passdb again (its destuser replaces params.user); null: referrals go
  /// straight to the IP they name. A re-authentication that refers the
  /// client elsewhere renders the referral and ends Failed (AuthRedirect).
  net::Task<Result> run(Frontend& fe, const passdb::ProxyFields& f, BackendLoginParams& params,
                        RedirectAuth* reauth = nullptr);
  /// Cancel pending backend I/O and waits (shutdown, login timeout).
  void cancel();

  const std::optional<ProxyFailure>& failure() const { return failure_; }
  const std::string& state() const { return last_state_; }
  unsigned reconnects() const { return reconnects_; }
  /// The client hung up while the backend login ran.
  bool client_gone() const { return client_gone_; }
  Clock::time_point started() const { return start_; }
  tls::Stream& backend() { return *backend_; }
  std::unique_ptr<BackendLogin>& machine() { return bl_; }
  const BackendLogin* machine() const { return bl_.get(); }
  /// Backend bytes that arrived behind the success line (they are the client's).
  std::string& leftover() { return be_buf_; }

 private:
  net::Task<std::optional<ProxyFailure>> attempt(Frontend& fe, const passdb::ProxyFields& f,
                                                 const BackendLoginParams& params,
                                                 const asio::ip::tcp::endpoint& ep,
                                                 Clock::time_point deadline);
  /// Where a backend referral leads: the next destination (and its log
  /// text), a referral for the client, or the end.
  struct RedirectHop {
    asio::ip::tcp::endpoint ep;
    std::string dest;
  };
  using RedirectStep = std::variant<RedirectHop, Referral, ProxyFailure>;
  net::Task<RedirectStep> reauth_step(RedirectAuth& auth, const std::string& target,
                                      const asio::ip::tcp::endpoint& current,
                                      const std::vector<asio::ip::tcp::endpoint>& visited,
                                      BackendLoginParams& params);
  Result refer(Frontend& fe, Referral r, const BackendLoginParams& params);
  net::Task<std::optional<ProxyFailure>> connect(const passdb::ProxyFields& f,
                                                 const asio::ip::tcp::endpoint& ep);
  net::Task<std::optional<ProxyFailure>> dialogue(const passdb::ProxyFields& f);
  Result give_up(Frontend& fe, ProxyFailure f);
  net::Task<std::optional<ProxyFailure>> backend_tls(const passdb::ProxyFields& f);
  net::Task<std::optional<ProxyFailure>> read_line(std::string& line);
  ProxyFailure io_failure(const asio::error_code& ec) const;
  ProxyFailure connect_failure(const asio::error_code& ec) const;
  void emit_pending_note();
  bool connect_error(const asio::error_code& ec);
  std::string after_text() const;
  void arm_deadline(Clock::time_point deadline);
  void watch_client();
  void unwatch_client();
  long long secs_since_session() const;

  tls::Stream& client_;
  const Snapshot& snap_;
  Governor& governor_;
  SessionLog& log_;
  const Abort& abort_;
  asio::steady_timer timer_;  // the pause before a reconnect
  net::Deadline deadline_;    // one attempt's proxy_timeout (per-worker wheel)
  std::optional<tls::Stream> backend_;
  std::unique_ptr<BackendLogin> bl_;
  std::string be_buf_;
  std::string last_state_;
  std::optional<ProxyFailure> failure_;
  Clock::time_point session_start_;
  Clock::time_point start_;
  unsigned reconnects_ = 0;
  unsigned watch_gen_ = 0;
  bool timed_out_ = false;
  bool client_gone_ = false;
  /// A plaintext backend's connect() is still in progress: the first read
  /// waits for it (net::connect_start), and a failure before the first byte
  /// is told apart as a connect failure.
  bool connecting_ = false;
  asio::ip::tcp::endpoint connect_ep_;
  std::string pending_note_;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);  // handlers hold weak refs
};

}  // namespace portier::login
