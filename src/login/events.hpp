#pragma once
// Typed session events: everything the engine reports about a session is one
// of these. The log sink (login/log_sink) renders each into exactly one
// Dovecot-shaped log line, and the per-worker counters (login/counters) are
// fed by the same call, so a metrics endpoint is one more consumer, not more
// call sites. Nothing else in the engine formats log lines.
//
// Owns: the event vocabulary. Uses: failure taxonomy, relay results.

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

#include "login/failure.hpp"
#include "relay/relay.hpp"

namespace portier::login::events {

/// Refused at accept time by max_connections / max_connections_per_ip.
struct ConnectionRefused {
  bool per_ip = false;
  unsigned limit = 0;
};
/// A connection preface (the PROXY header) refused the connection before any
/// banner; `quiet`: logged at debug level.
struct PrefaceRefused {
  std::string_view text;  // "haproxy: Client not trusted (rip=…)", …
  bool quiet = false;
};
/// The pre-login part ended without a relay ("Disconnected: <reason> (<summary>)").
struct PreloginEnded {
  std::string_view reason;
  std::string summary;  // "auth failed, 2 attempts in 3 secs", …
  bool health_check = false;  // a load balancer's check without a login: logged at debug level
};
/// The passdb (or the engine before it) refused the credentials.
struct AuthRefused {
  enum class Why { AuthzDenied, Mismatch, UnknownUser, TempFail };
  Why why = Why::Mismatch;
  std::string_view driver;  // passdb name for the `auth:` line, e.g. "passwd-file"
  std::string_view error;   // TempFail: the passdb's reason
  bool verbose = true;      // auth.verbose: log mismatches / unknown users
};
/// The passdb reply could not be used ("proxy(user): <error>").
struct ProxyConfigError {
  std::string_view error;
};
/// max_sessions_per_user refused the login.
struct UserLimit {
  unsigned limit = 0;
};
/// A remark from a protocol plug-in (an upstream value that was ignored).
struct Note {
  std::string_view text;
};
/// One backend attempt failed and will be retried.
struct ProxyRetry {
  const ProxyFailure* failure = nullptr;
  unsigned attempt = 0;
};
/// The backend login failed for good.
struct ProxyFailed {
  const ProxyFailure* failure = nullptr;
  bool verbose = true;  // auth.verbose: log `Login failed:` for auth failures
};
/// The pre-login timeout fired while talking to the backend.
struct ProxyTimedOut {
  std::string_view state;
  long long secs = 0;
};
/// The client hung up while the backend login was running.
struct ClientGone {
  std::string_view state;
  long long secs = 0;
};
/// Logged in at the backend; relaying starts.
struct ProxyStarted {
  std::string_view destuser;  // differs from the login user: " as user <destuser>"
  std::string_view master;
  std::chrono::milliseconds took{0};
  unsigned reconnects = 0;
};
/// The relay ended (rendered from the hand-off's saved context).
struct RelayEnded {
  const relay::Result* result = nullptr;
};

/// The backend referred the login elsewhere and the engine follows
/// (Dovecot 2.4's redirect without proxy_redirect_reauth).
struct ProxyRedirected {
  const ProxyFailure* failure = nullptr;  // the referral (reason, target)
  std::string_view to;                    // the new destination, ip:port
};

/// A backend referral's re-authentication (proxy_redirect_reauth) answered
/// `nologin` + `host`: the client is referred there and the login ends.
struct ClientRedirected {
  std::string_view host;
};

using Event = std::variant<ConnectionRefused, PrefaceRefused, PreloginEnded, AuthRefused, ProxyConfigError,
                           UserLimit, Note, ProxyRetry, ProxyFailed, ProxyTimedOut, ClientGone,
                           ProxyStarted, RelayEnded, ProxyRedirected, ClientRedirected>;

}  // namespace portier::login::events
