#pragma once
// Local authentication of one login attempt: the identity check, the passdb
// chain (answered inline when no hashing is needed, else on the auth pool),
// and the verdict on the passdb's answer — refuse (and how), or proxy to the
// destination its fields name, with the BackendLogin parameters built from
// them. The verdicts are pure functions (judge, backend_params), unit-tested
// without sockets; AuthFlow runs them and emits the log events.
//
// Owns: nothing beyond one call. Uses: passdb, sasl credentials, the session's
// log sink.

#include <asio/steady_timer.hpp>
#include <asio/thread_pool.hpp>
#include <memory>
#include <optional>
#include <string>

#include "login/backend_driver.hpp"
#include "login/log_sink.hpp"
#include "login/protocol.hpp"
#include "login/runtime.hpp"
#include "net/awaitable.hpp"
#include "passdb/passdb.hpp"
#include "passdb/proxy_fields.hpp"

struct ssl_st;

namespace portier::login {

/// What to do with a login attempt after local authentication.
struct AuthVerdict {
  bool proxy = false;                   // go on to the backend with `fields`
  AuthFailure reply = AuthFailure::Failed;  // otherwise: the frontend's reply
  std::string reason;                   // Disabled: the nologin reason
  bool failed_login = false;            // delay, per-IP penalty, max_auth_attempts
  std::optional<events::AuthRefused::Why> refused;  // an `auth:` line to log
  std::string log_error;                // TempFail reason / proxy config error for the log
  bool config_error = false;            // log_error is a `proxy(user): …` error
  bool aborted = false;                 // shutdown / login timeout during the lookup
  bool disconnect = false;              // failed: end the connection after the reply (Lookup::disconnect)
  std::string sasl_challenge;           // failed OAuth login: the failure JSON (base64) to send first
  /// `host` without `proxy`: refer the client there (AuthFlow::run fills
  /// the user and mechanism) instead of `reply`.
  std::optional<Referral> referral;
  passdb::ProxyFields fields;
};

/// Master-user logins towards portier itself (authzid ≠ authcid) are refused.
std::optional<AuthVerdict> check_identity(const sasl::Credentials& c);
/// The verdict on a passdb answer for `protocol`. Dovecot's priority:
/// `proxy` beats `host` (a login referral) beats `nologin`.
AuthVerdict judge(const passdb::Lookup& lookup, const Protocol& protocol);
/// A refused OAuth login's failure challenge for `mech` (base64 JSON): the
/// passdb's OAuthFailure when it gave one, else invalid_token / "mail".
std::string oauth_failure_challenge(std::string_view mech,
                                    const std::optional<passdb::OAuthFailure>& f);
/// The parameters of the backend login: destuser or the login user, `pass`
/// or the client's password (which is wiped here), master, mechanism, TLS.
BackendLoginParams backend_params(const passdb::ProxyFields& f, sasl::Credentials& creds,
                                  const std::string& hostname, const ClientInfo& ci);

/// The delay of a failed login: failure_delay, doubled per recent failure
/// from the same client key up to login.auth_penalty_max. Shutdown cancels it.
class FailureDelay {
 public:
  FailureDelay(const asio::any_io_executor& ex, Governor& gov) : timer_(ex), governor_(gov) {}
  /// Record a failure for `key` and wait out its delay (counted in `counters`).
  net::Task<void> wait(std::string key, const config::Config& cfg, const Abort& abort,
                       Counters::Live* counters = nullptr);
  void cancel() { timer_.cancel(); }

 private:
  asio::steady_timer timer_;
  Governor& governor_;
};

class AuthFlow final : public RedirectAuth {
 public:
  /// `attempt`: this connection's login attempt number (1, 2, ...); `ssl`:
  /// the client's TLS session or null (both for passdb requests, e.g.
  /// auth_http's Auth-Login-Attempt and Auth-SSL-Protocol/Cipher).
  AuthFlow(std::shared_ptr<const Snapshot> snap, const Protocol& protocol, const ClientInfo& ci,
           asio::thread_pool& pool, SessionLog& log, const Abort& abort, unsigned attempt = 1,
           const ssl_st* ssl = nullptr)
      : snap_(std::move(snap)), protocol_(protocol), ci_(ci), pool_(pool), log_(log),
        abort_(abort), attempt_(attempt), ssl_(ssl) {}

  /// Authenticate `creds` locally and return the verdict; the `auth:` and
  /// `proxy(user): …` log lines of a refusal are emitted here.
  net::Task<AuthVerdict> run(const sasl::Credentials& creds);

  /// proxy_redirect_reauth: the login's user looked up again (mechanism
  /// EXTERNAL, lookup only) with %{proxy_redirect_host_next/attempts} set.
  net::Task<passdb::Lookup> redirect_lookup(std::string_view host_next,
                                            std::string_view host_attempts) override;
  const Protocol& protocol() const override { return protocol_; }

 private:
  net::Task<passdb::Lookup> verify(const sasl::Credentials& c);
  /// The request about `user` with everything the connection tells.
  passdb::Request request(std::string_view user, std::string_view mechanism) const;
  net::Task<passdb::Lookup> lookup(passdb::Request& req);
  /// The passdb's answer and latency into the worker's passdb counters.
  static void count_passdb(const passdb::Lookup& l, std::chrono::microseconds took);

  std::shared_ptr<const Snapshot> snap_;
  const Protocol& protocol_;
  const ClientInfo& ci_;
  asio::thread_pool& pool_;
  SessionLog& log_;
  const Abort& abort_;
  unsigned attempt_;
  const ssl_st* ssl_;
  std::string user_;  // the login's authcid (redirect_lookup)
};

}  // namespace portier::login
