// The per-client session: the sequence of steps of one client connection.
//
//   accept ─► [preface: PROXY header, net/preface.hpp] ─► admit (governor
//        lease) ─► [implicit TLS] ─► FrontendDriver
//        ─(credentials)─► AuthFlow (passdb) ─► BackendDriver (connect, TLS,
//        protocol machine, retries) ─► Handoff ─► relay::Relay
//
// The session owns the client connection, the leases and the state of its
// login attempts; what each step does lives in its own type, every log line is
// an event rendered by the log sink, and protocol knowledge stays in the
// plug-ins.

#include "login/session.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>

#include <optional>

#include "core/secure.hpp"
#include "core/strings.hpp"
#include "login/auth_flow.hpp"
#include "login/backend_driver.hpp"
#include "login/client_info.hpp"
#include "login/frontend_driver.hpp"
#include "login/handoff.hpp"
#include "login/log_sink.hpp"
#include "net/preface.hpp"

namespace portier::login {

using net::Task;

class Session final : public Stoppable {
 public:
  Session(asio::ip::tcp::socket socket, const net::Endpoints& eps,
          std::shared_ptr<const Snapshot> snap, const ListenerInfo& li, SessionRegistry& reg,
          asio::thread_pool& pool, Governor& gov)
      : client_(std::move(socket)), eps_(eps), snap_(std::move(snap)), listener_(li), registry_(reg),
        pool_(pool), governor_(gov), log_(li.protocol->service, ci_, li.name),
        front_(client_, *snap_, ci_, log_, abort_, stats_, conn_lease_),
        delay_(client_.socket().get_executor(), gov) {
    registry_.sessions.insert(this);
    Counters::connection_opened(log_.counters());
  }
  ~Session() {
    registry_.sessions.erase(this);
    // A relayed connection is closed (and counted) by the relay's end.
    if (phase_ != Phase::Relay) Counters::connection_closed(log_.counters());
    // conn_lease_ / user_lease_ release exactly what they were admitted under.
    if (phase_ == Phase::BackendLogin) governor_.backend_login_finished();
  }

  static Task<void> main(std::unique_ptr<Session> s) { co_await s->run(); }

  void kick() override {
    abort_.kicked = true;
    stop(true);
  }
  uint64_t id() const override { return id_; }
  SessionRow row() const override {
    SessionRow r;
    r.id = id_;
    r.user = log_.user();
    r.protocol = listener_.protocol->name;
    r.src_ip = ci_.remote_ip.is_unspecified() ? std::string() : log_.rip();
    r.src_port = ci_.remote_port;
    r.since = since_;
    if (phase_ == Phase::PreLogin) {
      r.state = "prelogin";
    } else {
      set_dest(r, log_.dest());
      r.state = driver_ && driver_->machine() ? driver_->machine()->state() : "connecting";
    }
    return r;
  }

  void stop(bool force) override {
    if (!force && phase_ == Phase::BackendLogin) return;
    abort_.stopped = true;
    client_.cancel();
    if (driver_) driver_->cancel();
    front_.disarm();
    delay_.cancel();  // a pending failure delay must not hold up shutdown
  }

 private:
  enum class Phase { PreLogin, BackendLogin, Relay };
  enum class Next { Continue, Relay, End };

  Task<void> run() {
    net::PrefaceResult pre;
    if (!listener_.preface.empty() && !co_await preface(pre)) co_return;
    if (!init_client_info(ci_, client_.socket(), eps_, *snap_, listener_.tls)) co_return;
    // A hop in front (HAProxy) terminated TLS for the client: the session
    // counts as TLS (no STARTTLS, cleartext allowed, `TLS` in log lines).
    ci_.tls = pre.tls;
    ci_.local_name = std::move(pre.local_name);
    ci_.cert_valid = !pre.cert_user.empty();
    ci_.cert_user = std::move(pre.cert_user);
    ci_.health_check = pre.health_check;
    const auto& lc = snap_->cfg.login;
    // Counted under the TCP peer's key, and released under exactly that key
    // (the lease), whatever a trusted upstream's ID/XCLIENT later says.
    auto admit = governor_.admit_connection(Governor::ip_key(ci_.remote_ip, lc.ipv6_prefix),
                                            lc.max_connections, lc.max_connections_per_ip,
                                            conn_lease_);
    const bool implicit_tls = listener_.tls == config::TlsMode::Implicit;
    if (admit != Governor::Admit::Ok) {
      // Refused before any TLS or protocol work: the cheapest possible answer.
      const bool total = admit == Governor::Admit::TooManyTotal;
      log_.emit(events::ConnectionRefused{!total,
                                          total ? lc.max_connections : lc.max_connections_per_ip});
      co_await front_.refuse(*listener_.protocol, implicit_tls,
                             total ? "Server is busy, try again later."
                                   : "Too many connections from your IP.");
      co_return;
    }
    front_.arm(lc.client_timeout, [this] {
      abort_.login_timed_out = true;
      client_.cancel();
      if (driver_) driver_->cancel();
    });
    if (implicit_tls) {
      auto hs = co_await client_.handshake_server(snap_->server_ctx_for(listener_.index));
      Counters::tls_handshake(log_.counters(), TlsLeg::Client, hs.ok);
      if (!hs.ok) {
        log_.emit(events::PreloginEnded{"TLS handshaking: " + log::sanitize(hs.error),
                                        stats_.summary(), ci_.health_check});
        co_return;
      }
      ci_.tls = true;
      note_tls_peer(ci_, client_.ssl(), *snap_);
    }
    ci_.end_client_tls = ci_.tls;
    front_.start(*listener_.protocol, snap_->server_ctx_for(listener_.index));
    // Bytes a preface read behind itself are the client's first input.
    if (!pre.leftover.empty()) front_.fe().feed(pre.leftover);
    core::secure_zero(pre.leftover.data(), pre.leftover.size());
    // The relay runs from here, after the pre-login coroutine frames (with
    // their passdb reply, credentials and parameters) are gone.
    if (co_await prelogin()) co_await relay();
  }

  /// The listener's preface (the PROXY header): before the limits, so that
  /// they, the logs and everything else see the client's addresses. False:
  /// refused, closed without a banner.
  Task<bool> preface(net::PrefaceResult& out) {
    const auto& lc = snap_->cfg.login;
    net::PrefaceSettings ps;
    ps.trusted = [&lc](const asio::ip::address& a) {
      for (const auto& c : lc.haproxy_trusted_networks)
        if (c.contains(a)) return true;
      return false;
    };
    ps.timeout = lc.haproxy_timeout;
    auto p = net::make_preface(listener_.preface, std::move(ps));
    if (p) {
      out = co_await p->run(client_.socket(), eps_);
      if (out.outcome == net::PrefaceResult::Outcome::Proceed) {
        eps_ = out.endpoints;
        co_return true;
      }
    }
    client_.close();
    if (!abort_.stopped)
      log_.emit(events::PrefaceRefused{out.log, out.outcome == net::PrefaceResult::Outcome::Quiet});
    co_return false;
  }

  /// Login attempts until one reaches the relay (true) or the session ends.
  Task<bool> prelogin() {
    for (;;) {
      if (!co_await front_.next_login()) co_return false;
      if (co_await login()) co_return true;
      if (disconnect_ && !abort_.any()) {
        co_await front_.close_after_failure();
        co_return false;
      }
      const bool gone = driver_ && driver_->client_gone();
      if (stats_.failures >= snap_->cfg.login.max_auth_attempts && !abort_.any()) {
        co_await front_.too_many_failures();
        co_return false;
      }
      if (abort_.any() || gone) {
        co_await front_.cut_short(gone, "Connection closed");
        co_return false;
      }
    }
  }

  /// Local authentication, then the backend login. True: relaying.
  Task<bool> login() {
    sasl::Credentials creds = front_.fe().take_credentials();
    const auto t0 = Clock::now();
    ++stats_.attempts;
    stats_.last_failure.reset();
    log_.set_user(creds.authcid, core::to_upper(creds.mech));
    AuthFlow flow(snap_, *listener_.protocol, ci_, pool_, log_, abort_, stats_.attempts,
                  client_.ssl());
    AuthVerdict v = co_await flow.run(creds);
    if (v.aborted) {
      Counters::login_result(log_.counters(), LoginResult::Aborted);
      co_return false;
    }
    if (!v.proxy) {
      Counters::login_result(log_.counters(), verdict_result(v));
      if (v.failed_login) co_await delay_failure();
      if (v.referral)
        front_.fe().referred(*v.referral);
      else
        front_.fe().auth_failed(v.reply, v.reason, v.sasl_challenge);
      if (v.failed_login) ++stats_.failures;
      disconnect_ = v.disconnect;
      co_return false;
    }
    BackendLoginParams params = backend_params(v.fields, creds, snap_->cfg.server.hostname, ci_);
    const unsigned max_user = snap_->cfg.login.max_sessions_per_user;
    if (!governor_.admit_user(log_.user(), max_user, user_lease_)) {
      log_.emit(events::UserLimit{max_user});
      Counters::login_result(log_.counters(), LoginResult::UserLimit);
      front_.fe().auth_failed(AuthFailure::Limit, {});
      params.password.clear();
      co_return false;
    }
    // proxy_redirect_reauth ([login] or the passdb field): backend referrals
    // ask the passdb again.
    const bool reauth_on = snap_->cfg.login.proxy_redirect_reauth || v.fields.redirect_reauth;
    RedirectAuth* reauth = reauth_on ? &flow : nullptr;
    const bool ok = co_await backend_login(v.fields, params, reauth);
    if (ok) Counters::login_duration(log_.counters(), since(t0));
    co_return ok;
  }

  /// A local refusal's result for the counters.
  static LoginResult verdict_result(const AuthVerdict& v) {
    if (v.refused) {
      switch (*v.refused) {
        case events::AuthRefused::Why::AuthzDenied:
          return LoginResult::AuthzDenied;
        case events::AuthRefused::Why::Mismatch:
          return LoginResult::PasswordMismatch;
        case events::AuthRefused::Why::UnknownUser:
          return LoginResult::UserUnknown;
        case events::AuthRefused::Why::TempFail:
          return LoginResult::PassdbTempfail;
      }
    }
    return v.reply == AuthFailure::Disabled ? LoginResult::Disabled : LoginResult::ConfigError;
  }
  static std::chrono::microseconds since(Clock::time_point t0) {
    return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0);
  }

  Task<bool> backend_login(const passdb::ProxyFields& f, BackendLoginParams& params,
                           RedirectAuth* reauth) {
    phase_ = Phase::BackendLogin;
    governor_.backend_login_started();
    driver_.emplace(client_, *snap_, governor_, log_, abort_, stats_.start);
    const auto t0 = Clock::now();
    auto r = co_await driver_->run(front_.fe(), f, params, reauth);
    params.password.clear();
    Counters::login_result(log_.counters(), r == BackendDriver::Result::LoggedIn ? LoginResult::Success
                                            : r == BackendDriver::Result::Failed ? LoginResult::BackendFailed
                                                                                 : LoginResult::Aborted);
    if (r == BackendDriver::Result::LoggedIn) {
      Counters::backend_login_duration(log_.counters(), since(t0));
      // The login counts as a success only now that the backend accepted it.
      governor_.record_auth_success(penalty_key());
      destuser_ = params.user;
      master_ = params.master;
      co_return true;
    }
    auto& last = stats_.last_failure;
    if (driver_->failure()) last = *driver_->failure();
    const bool refused = last && failure_is_refusal(last->type);
    if (r == BackendDriver::Result::Failed && refused) ++stats_.failures;
    phase_ = Phase::PreLogin;
    governor_.backend_login_finished();
    user_lease_.release();
    // The backend refused the credentials: a failed login like a local one
    // (delay, per-IP penalty). The reply is queued and goes out after it.
    if (refused && !abort_.any() && !driver_->client_gone()) co_await delay_failure();
    co_return false;
  }

  Task<void> relay() {
    phase_ = Phase::Relay;
    governor_.backend_login_finished();
    front_.disarm();
    relay::Options ropts;
    ropts.linger = snap_->cfg.login.relay_linger;
    Handoff h{client_,
              driver_->backend(),
              client_first_bytes(driver_->machine()->client_reply(), driver_->leftover()),
              front_.fe().take_pending_input(),
              log_,
              events::ProxyStarted{destuser_, master_, {}, driver_->reconnects()},
              driver_->started(),
              std::move(conn_lease_),
              std::move(user_lease_),
              registry_,
              ropts,
              row()};
    co_await h.run(abort_);
  }

  /// A failed login; the penalty key is the client's (possibly forwarded)
  /// address, IPv6 grouped by login.ipv6_prefix.
  Task<void> delay_failure() { return delay_.wait(penalty_key(), snap_->cfg, abort_, &log_.counters()); }
  std::string penalty_key() const {
    return Governor::ip_key(ci_.remote_ip, snap_->cfg.login.ipv6_prefix);
  }

  const uint64_t id_ = next_session_id();
  const std::chrono::system_clock::time_point since_ = std::chrono::system_clock::now();
  tls::Stream client_;
  net::Endpoints eps_;  // from accept4 and the listener
  std::shared_ptr<const Snapshot> snap_;
  ListenerInfo listener_;
  SessionRegistry& registry_;
  asio::thread_pool& pool_;
  Governor& governor_;
  ClientInfo ci_;
  SessionLog log_;
  Abort abort_;
  LoginStats stats_;
  Governor::Lease conn_lease_;  // Governor::admit_connection, under the TCP peer's key
  Governor::Lease user_lease_;  // Governor::admit_user
  FrontendDriver front_;        // the Frontend, the login timer, goodbyes
  FailureDelay delay_;          // cancelled by stop()
  std::optional<BackendDriver> driver_;
  std::string destuser_;
  std::string master_;
  Phase phase_ = Phase::PreLogin;
  bool disconnect_ = false;  // the last failed login ends the connection (AuthVerdict::disconnect)
};

void start_session(asio::ip::tcp::socket socket, const net::Endpoints& endpoints,
                   std::shared_ptr<const Snapshot> snapshot, const ListenerInfo& listener,
                   SessionRegistry& registry, asio::thread_pool& auth_pool, Governor& governor) {
  auto exec = socket.get_executor();
  auto s = std::make_unique<Session>(std::move(socket), endpoints, std::move(snapshot), listener,
                                     registry, auth_pool, governor);
  asio::co_spawn(exec, Session::main(std::move(s)), asio::detached);
}

}  // namespace portier::login
