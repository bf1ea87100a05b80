// The per-client session coroutine: the login engine.
//
//   accept ─► [implicit TLS] ─► Frontend dialogue ──(Authenticate)──► passdb (thread pool)
//        ─► BackendLogin attempts (connect, [TLS], protocol dialogue; retries)
//        ─► success reply to the client ─► relay ─► "Disconnected by ..." log line
//
// Protocol knowledge lives only in the Frontend / BackendLogin plug-ins; this
// file deals with sockets, TLS, timers, the passdb, retries and log lines.

#include "login/session.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/error.hpp>
#include <asio/steady_timer.hpp>
#include <sys/socket.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <chrono>
#include <optional>

#include "core/base64.hpp"
#include "core/secure.hpp"
#include "core/strings.hpp"
#include "log/log.hpp"
#include "passdb/proxy_fields.hpp"
#include "relay/relay.hpp"
#include "tls/stream.hpp"

namespace portier::login {

using Clock = std::chrono::steady_clock;
using net::Task;
using net::use_nothrow;
using log::Level;

namespace {

constexpr size_t kBackendMaxLine = 4096;  // Dovecot's pre-login backend line limit
constexpr size_t kReadChunk = 4096;
constexpr auto kRetryDelay = std::chrono::milliseconds(1000);
constexpr auto kRetryMinRemaining = std::chrono::milliseconds(1100);
constexpr auto kGoodbyeWriteLimit = std::chrono::seconds(2);
// While shutting down a goodbye gets less: shutdown must end within
// server.shutdown_timeout + 1 s even with clients that do not read.
constexpr auto kShutdownGoodbyeWriteLimit = std::chrono::milliseconds(300);
// Upper bound for any backend deadline (passdb proxy_timeout, login.proxy_timeout):
// keeps `now + timeout` far from overflowing.
constexpr auto kMaxProxyTimeout = passdb::kMaxProxyTimeout;

long long secs_since(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - t).count();
}

std::string addr_text(const asio::ip::address& a) {
  if (a.is_v6() && a.to_v6().is_v4_mapped())
    return asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6()).to_string();
  return a.to_string();
}

/// Dovecot's session id: base64 of 48 bits of microsecond time, the 16-bit
/// client port and the client IP (16 characters for IPv4).
std::string make_session_id(const asio::ip::address& ip, uint16_t port) {
  std::string raw;
  auto usecs = std::chrono::duration_cast<std::chrono::microseconds>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count();
  for (int i = 5; i >= 0; --i) raw += static_cast<char>((usecs >> (i * 8)) & 0xff);
  raw += static_cast<char>(port >> 8);
  raw += static_cast<char>(port & 0xff);
  if (ip.is_v4()) {
    auto b = ip.to_v4().to_bytes();
    raw.append(reinterpret_cast<const char*>(b.data()), b.size());
  } else {
    auto b = ip.to_v6().to_bytes();
    raw.append(reinterpret_cast<const char*>(b.data()), b.size());
  }
  std::string id = core::base64_encode(raw);
  while (!id.empty() && id.back() == '=') id.pop_back();
  return id;
}

}  // namespace

/// A session id as it may appear in a log line: a trusted upstream chooses it,
/// so everything outside [A-Za-z0-9+/=._-] becomes '?' and it is cut at 64
/// characters — it can fake no other field. Used for every log line.
std::string log_session_id(std::string_view id) {
  std::string out;
  id = id.substr(0, 64);
  out.reserve(id.size());
  for (char c : id)
    out += (std::isalnum(static_cast<unsigned char>(c)) || (c != 0 && std::strchr("+/=._-", c)))
               ? c
               : '?';
  return out;
}

/// Pre-login reads land in this per-thread buffer and are copied into the
/// frontend's (bounded) input buffer at once, so no session owns a read
/// buffer of its own. Safe: nothing suspends between the read and the copy.
char* read_buffer() {
  thread_local char buf[kReadChunk];
  return buf;
}

class Session {
 public:
  Session(asio::ip::tcp::socket socket, std::shared_ptr<const Snapshot> snap,
          const ListenerInfo& li, SessionRegistry& reg, asio::thread_pool& pool, Governor& gov)
      : client_(std::move(socket)),
        snap_(std::move(snap)),
        listener_(li),
        registry_(reg),
        pool_(pool),
        governor_(gov),
        login_timer_(client_.socket().get_executor()),
        proxy_timer_(client_.socket().get_executor()),
        delay_timer_(client_.socket().get_executor()),
        start_(Clock::now()) {
    registry_.sessions.insert(this);
  }
  ~Session() {
    registry_.sessions.erase(this);
    // conn_lease_ / user_lease_ release exactly what they were admitted under.
    if (phase_ == Phase::BackendLogin) governor_.backend_login_finished();
  }

  static Task<void> main(std::unique_ptr<Session> s) { co_await s->run(); }

  enum class Phase { PreLogin, BackendLogin, Relay };
  Phase phase() const { return phase_; }

  /// Process shutdown (worker thread). Without `force`, a login talking to a
  /// backend is left to finish.
  void stop(bool force) {
    if (!force && phase_ == Phase::BackendLogin) return;
    stopped_ = true;
    client_.cancel();
    if (backend_) backend_->cancel();
    login_timer_.cancel();
    proxy_timer_.cancel();
    delay_timer_.cancel();  // a pending failure delay must not hold up shutdown
  }

 private:
  // ---- logging ----------------------------------------------------------
  std::string_view service() const { return listener_.protocol->service; }

  std::string elements() const {
    std::string e = "user=<" + log::sanitize(user_) + ">";
    if (!method_.empty()) e += ", method=" + method_;
    e += ", rip=" + rip();
    e += ", lip=" + lip();
    if (ci_.tls) e += ", TLS";
    else if (ci_.secured()) e += ", secured";
    // A trusted upstream chooses the session id: keep it from faking fields.
    e += ", session=<" + log_session_id(ci_.session_id) + ">";
    return e;
  }

  /// The client's addresses as text, formatted once (a trusted ID/XCLIENT
  /// may change them, so the cache is keyed by the address).
  const std::string& rip() const {
    if (rip_for_ != ci_.remote_ip || rip_text_.empty()) {
      rip_for_ = ci_.remote_ip;
      rip_text_ = addr_text(ci_.remote_ip);
    }
    return rip_text_;
  }
  const std::string& lip() const {
    if (lip_for_ != ci_.local_ip || lip_text_.empty()) {
      lip_for_ = ci_.local_ip;
      lip_text_ = addr_text(ci_.local_ip);
    }
    return lip_text_;
  }

  void log_client(Level lvl, std::string_view msg) {
    if (!log::enabled(lvl)) return;
    log::write(lvl, service(), std::string(msg) + ": " + elements());
  }

  void log_proxy(Level lvl, std::string_view msg) {
    if (!log::enabled(lvl)) return;
    log::write(lvl, service(), "proxy(" + log::sanitize(user_) + "," + dest_ + "): " +
                                   std::string(msg) + ": " + elements());
  }

  std::string auth_summary() const {
    if (auth_attempts_ == 0)
      return fmt::format("no auth attempts in {} secs", secs_since(start_));
    if (last_failure_) {
      const auto& f = *last_failure_;
      if (f.type == FailureType::AuthReplied || f.type == FailureType::AuthNotReplied)
        return "proxy dest auth failed";
      return fmt::format("proxy dest {}, {} attempts in {} secs, last failure: {}{} ({})",
                         failure_what(f.type), auth_attempts_, secs_since(start_),
                         failure_log_prefix(f.type), f.reason, failure_dest_code(f.type));
    }
    return fmt::format("auth failed, {} attempts in {} secs", auth_attempts_,
                       secs_since(start_));
  }

  static std::string_view failure_what(FailureType t) {
    switch (t) {
      case FailureType::Connect:
        return "connection failed";
      case FailureType::Internal:
      case FailureType::InternalConfig:
        return "internal failure";
      case FailureType::Protocol:
        return "protocol failure";
      case FailureType::AuthTempfail:
        return "temporary authentication failure";
      case FailureType::LimitReached:
        return "connection limit reached";
      case FailureType::AuthReplied:
      case FailureType::AuthNotReplied:
        return "authentication failure";
      default:
        return "remote failure";
    }
  }

  // ---- client I/O -------------------------------------------------------
  /// Write the frontend's queued output. False when the client is gone.
  Task<bool> flush_client() {
    std::string& out = fe_->output();
    if (out.empty()) co_return true;
    auto ec = co_await client_.write_all(out);
    out.clear();
    co_return !ec;
  }

  void arm_login_timer(std::chrono::milliseconds d) {
    login_timer_.expires_after(d);
    login_timer_.async_wait([this, alive = std::weak_ptr<int>(alive_), gen = ++login_gen_](
                                const asio::error_code& ec) {
      // A handler can already be queued when the timer is cancelled or the
      // session ends: check both before touching anything.
      if (ec || alive.expired() || gen != login_gen_) return;
      login_timed_out_ = true;
      client_.cancel();
      if (backend_) backend_->cancel();
    });
  }

  /// After a goodbye is queued: write it, bounded in time, then stop.
  Task<void> goodbye() {
    login_timer_.cancel();
    login_timer_.expires_after(stopped_ ? std::chrono::duration_cast<std::chrono::milliseconds>(
                                              kShutdownGoodbyeWriteLimit)
                                        : std::chrono::duration_cast<std::chrono::milliseconds>(
                                              kGoodbyeWriteLimit));
    login_timer_.async_wait([this, alive = std::weak_ptr<int>(alive_), gen = ++login_gen_](
                                const asio::error_code& ec) {
      if (ec || alive.expired() || gen != login_gen_) return;
      client_.close();
    });
    co_await flush_client();
    ++login_gen_;
    login_timer_.cancel();
  }

  // ---- the session --------------------------------------------------------
  Task<void> run() {
    asio::error_code ec;
    auto rep = client_.socket().remote_endpoint(ec);
    auto lep = client_.socket().local_endpoint(ec);
    if (ec) co_return;
    ci_.remote_ip = rep.address();
    ci_.remote_port = rep.port();
    ci_.local_ip = lep.address();
    ci_.local_port = lep.port();
    ci_.trusted = snap_->is_trusted(ci_.remote_ip);
    ci_.tls_configured = listener_.tls == config::TlsMode::StartTls && snap_->server_ctx;
    ci_.proxy_ttl = snap_->cfg.login.proxy_ttl;
    ci_.session_id = make_session_id(ci_.remote_ip, ci_.remote_port);

    const auto& lc = snap_->cfg.login;
    // Counted under the TCP peer's key, and released under exactly that key
    // (the lease), whatever a trusted upstream's ID/XCLIENT later says.
    auto admit = governor_.admit_connection(Governor::ip_key(ci_.remote_ip, lc.ipv6_prefix),
                                            lc.max_connections, lc.max_connections_per_ip,
                                            conn_lease_);
    if (admit != Governor::Admit::Ok) {
      // Refused before any TLS or protocol work: the cheapest possible answer.
      log_client(Level::Warning,
                 admit == Governor::Admit::TooManyTotal
                     ? fmt::format("Disconnected: Connection limit reached (max_connections={})",
                                   lc.max_connections)
                     : fmt::format("Disconnected: Too many connections from this IP "
                                   "(max_connections_per_ip={})",
                                   lc.max_connections_per_ip));
      if (listener_.tls != config::TlsMode::Implicit) {
        fe_ = listener_.protocol->make_frontend(snap_->frontend, ci_);
        fe_->goodbye(admit == Governor::Admit::TooManyTotal ? "Server is busy, try again later."
                                                            : "Too many connections from your IP.");
        co_await goodbye();
      }
      client_.close();
      co_return;
    }
    // conn_lease_ is released in ~Session unless the relay takes it over.

    arm_login_timer(snap_->cfg.login.client_timeout);

    if (listener_.tls == config::TlsMode::Implicit) {
      auto hs = co_await client_.handshake_server(snap_->server_ctx.get());
      if (!hs.ok) {
        log_client(Level::Info, "Disconnected: TLS handshaking: " + log::sanitize(hs.error) +
                                    " (" + auth_summary() + ")");
        co_return;
      }
      ci_.tls = true;
    }
    ci_.end_client_tls = ci_.tls;

    fe_ = listener_.protocol->make_frontend(snap_->frontend, ci_);
    fe_->start();
    // The relay runs from here, after the pre-login coroutine frames (with
    // their passdb reply, credentials and parameters) are gone: an idle
    // relayed session keeps only what the relay needs.
    if (co_await prelogin()) co_await relay();
  }

  /// True when the backend login succeeded and the relay should start.
  Task<bool> prelogin() {
    for (;;) {
      FrontendEvent ev = fe_->next();
      if (!co_await flush_client()) {
        end_prelogin("Connection closed");
        co_return false;
      }
      switch (ev) {
        case FrontendEvent::NeedInput: {
          asio::error_code ec;
          size_t n = co_await client_.read_some(read_buffer(), kReadChunk, ec);
          if (ec) {
            if (stopped_) {
              fe_->goodbye("Server shutting down.");
              co_await goodbye();
              end_prelogin("Process shutting down");
            } else if (login_timed_out_) {
              fe_->timed_out();
              co_await goodbye();
              end_prelogin("Inactivity");
            } else {
              end_prelogin(ec == asio::error::eof ? "Connection closed" : ec.message());
            }
            co_return false;
          }
          fe_->feed(std::string_view(read_buffer(), n));
          break;
        }
        case FrontendEvent::StartTls: {
          if (!snap_->server_ctx) {
            end_prelogin("TLS not configured");
            co_return false;
          }
          auto hs = co_await client_.handshake_server(snap_->server_ctx.get());
          if (!hs.ok) {
            end_prelogin("TLS handshaking: " + log::sanitize(hs.error));
            co_return false;
          }
          ci_.tls = true;
          ci_.end_client_tls = true;
          fe_->tls_started();
          break;
        }
        case FrontendEvent::Close:
          end_prelogin(fe_->close_reason().empty() ? std::string_view("Logged out")
                                                   : fe_->close_reason());
          co_return false;
        case FrontendEvent::Authenticate: {
          bool relayed = co_await login();
          if (relayed) co_return true;
          if (auth_failures_ >= snap_->cfg.login.max_auth_attempts && !stopped_ &&
              !login_timed_out_) {
            co_await flush_client();
            fe_->goodbye("Too many authentication failures.");
            co_await goodbye();
            end_prelogin("Too many authentication failures");
            co_return false;
          }
          if (stopped_ || login_timed_out_ || client_gone_) {
            if (login_timed_out_ && !stopped_ && !client_gone_) {
              fe_->timed_out();
              co_await goodbye();
            } else if (stopped_ && !client_gone_) {
              fe_->goodbye("Server shutting down.");
              co_await goodbye();
            }
            end_prelogin(stopped_ ? "Process shutting down"
                                  : login_timed_out_ ? "Inactivity" : "Connection closed");
            co_return false;
          }
          break;
        }
      }
    }
  }

  void end_prelogin(std::string_view reason) {
    client_.close();  // before the log line: a reacting client sees the slot free
    conn_lease_.release();
    log_client(Level::Info, fmt::format("Disconnected: {} ({})", reason, auth_summary()));
  }

  // ---- authentication -------------------------------------------------------
  /// Runs on the auth thread pool. A plain coroutine function, not a
  /// capturing lambda: GCC 12 mis-handles lambda captures in coroutine frames.
  static Task<passdb::Lookup> verify_on_pool(std::shared_ptr<const Snapshot> snap,
                                             passdb::RequestInfo info, std::string user,
                                             std::string pass) {
    passdb::Lookup result;
    result.result = passdb::Result::UnknownUser;
    for (const auto& db : snap->passdbs) {
      if (!db->serves(info.protocol)) continue;
      auto l = db->verify(user, pass, info);
      if (l.result == passdb::Result::UnknownUser) continue;
      result = std::move(l);
      break;
    }
    core::secure_zero(pass);
    co_return result;
  }

  Task<passdb::Lookup> verify(const sasl::Credentials& c) {
    passdb::RequestInfo info{std::string(listener_.protocol->name), rip(), lip()};
    // No hashing needed (nopassword, cleartext scheme, unknown user): answer
    // here and skip two thread hand-offs.
    bool inline_ok = true;
    passdb::Lookup quick;
    quick.result = passdb::Result::UnknownUser;
    for (const auto& db : snap_->passdbs) {
      if (!db->serves(info.protocol)) continue;
      auto l = db->verify_inline(c.authcid, c.password.view(), info);
      if (!l) {
        inline_ok = false;
        break;
      }
      if (l->result == passdb::Result::UnknownUser) continue;
      quick = std::move(*l);
      break;
    }
    if (inline_ok) co_return quick;
    // Password hashing is slow by design: never on the worker's event loop.
    co_return co_await asio::co_spawn(pool_.get_executor(),
                                      verify_on_pool(snap_, std::move(info), c.authcid, std::string(c.password.view())),
                                      asio::use_awaitable);
  }

  /// The penalty key of the client: its (possibly forwarded) address, IPv6
  /// grouped by login.ipv6_prefix.
  std::string penalty_key() const {
    return Governor::ip_key(ci_.remote_ip, snap_->cfg.login.ipv6_prefix);
  }

  /// A failed login: the per-IP penalty grows the delay for this IP only.
  /// The timer is a member so that shutdown (stop()) can cancel it.
  Task<void> delay_failure() {
    const std::string key = penalty_key();
    governor_.record_auth_failure(key);
    auto d = governor_.failure_delay(key, snap_->cfg.auth.failure_delay,
                                     snap_->cfg.login.auth_penalty_max);
    if (d.count() <= 0 || stopped_) co_return;
    delay_timer_.expires_after(d);
    co_await delay_timer_.async_wait(use_nothrow);
  }

  /// One Authenticate event. True when the session went on to relay (and ended).
  Task<bool> login() {
    sasl::Credentials creds = fe_->take_credentials();
    ++auth_attempts_;
    last_failure_.reset();
    user_ = creds.authcid;
    method_ = core::to_upper(creds.mech);

    if (!creds.authzid.empty() && creds.authzid != creds.authcid) {
      // Master-user logins towards portier itself are not supported.
      log::logf(Level::Info, "auth", "{}({},{},<{}>): Authorization as another user denied",
                "passwd-file", log::sanitize(user_), rip(), log_session_id(ci_.session_id));
      co_await delay_failure();
      fe_->auth_failed(AuthFailure::Failed, {});
      ++auth_failures_;
      creds.password.clear();
      co_return false;
    }

    passdb::Lookup lookup = co_await verify(creds);
    if (stopped_ || login_timed_out_) co_return false;

    if (lookup.result != passdb::Result::Ok) {
      if (lookup.result == passdb::Result::TempFail) {
        log::logf(Level::Error, "auth", "passwd-file({},{},<{}>): {}", log::sanitize(user_),
                  rip(), log_session_id(ci_.session_id), log::sanitize(lookup.error));
        fe_->auth_failed(AuthFailure::TempFail, {});
      } else {
        if (snap_->cfg.auth.verbose)
          log::logf(Level::Info, "auth", "passwd-file({},{},<{}>): {}", log::sanitize(user_),
                    rip(), log_session_id(ci_.session_id),
                    lookup.result == passdb::Result::Mismatch ? "Password mismatch"
                                                              : "unknown user");
        co_await delay_failure();
        fe_->auth_failed(AuthFailure::Failed, {});
        ++auth_failures_;
      }
      creds.password.clear();
      co_return false;
    }

    auto pf = passdb::parse_proxy_fields(lookup.reply, listener_.protocol->default_port,
                                         listener_.protocol->default_tls_port);
    if (!pf.fields) {
      log::write(Level::Error, service(),
                 "proxy(" + log::sanitize(user_) + "): " + pf.error + ": " + elements());
      fe_->auth_failed(AuthFailure::TempFail, {});
      creds.password.clear();
      co_return false;
    }
    passdb::ProxyFields& f = *pf.fields;
    if (!f.proxy) {
      if (f.nologin) {
        fe_->auth_failed(AuthFailure::Disabled, f.reason);
      } else {
        // portier only proxies: a passdb entry without `proxy` has nowhere to go.
        log::write(Level::Error, service(),
                   "proxy(" + log::sanitize(user_) +
                       "): passdb reply has no proxy field (portier does not log in locally): " +
                       elements());
        fe_->auth_failed(AuthFailure::TempFail, {});
      }
      creds.password.clear();
      co_return false;
    }

    BackendLoginParams params;
    params.user = f.destuser.empty() ? creds.authcid : f.destuser;
    params.password = f.pass ? std::string_view(*f.pass) : creds.password.view();
    creds.password.clear();
    params.master = f.master;
    params.mech = core::to_upper(f.proxy_mech);
    params.starttls = f.tls == passdb::BackendTls::StartTls;
    params.tls = f.tls != passdb::BackendTls::None;
    params.nopipelining = f.nopipelining;
    params.not_trusted = f.not_trusted;
    params.noauth = f.noauth;
    params.forward = f.forward;
    params.hostname = snap_->cfg.server.hostname;
    params.client = &ci_;

    if (!governor_.admit_user(user_, snap_->cfg.login.max_sessions_per_user, user_lease_)) {
      log_client(Level::Warning,
                 fmt::format("Login refused: too many sessions for this user "
                             "(max_sessions_per_user={})",
                             snap_->cfg.login.max_sessions_per_user));
      fe_->auth_failed(AuthFailure::Limit, {});
      params.password.clear();
      co_return false;
    }
    // The login counts as a success only when the backend accepts it (proxy()).

    phase_ = Phase::BackendLogin;
    governor_.backend_login_started();
    bool relayed = co_await proxy(f, params);
    params.password.clear();
    if (!relayed) {
      phase_ = Phase::PreLogin;
      governor_.backend_login_finished();
      user_lease_.release();
      // The backend refused the credentials: a failed login like a local
      // one (delay, per-IP penalty; auth_failures_ was counted in proxy()).
      // The reply is already queued and goes out after the delay.
      if (last_failure_ &&
          (last_failure_->type == FailureType::AuthReplied ||
           last_failure_->type == FailureType::AuthNotReplied) &&
          !stopped_ &&
          !login_timed_out_ && !client_gone_)
        co_await delay_failure();
    }
    co_return relayed;
  }

  // ---- backend login ----------------------------------------------------------
  Task<bool> proxy(const passdb::ProxyFields& f, const BackendLoginParams& params) {
    asio::error_code ec;
    std::string ip_text = f.hostip.empty() ? f.host : f.hostip;
    asio::ip::address ip = asio::ip::make_address(ip_text, ec);
    dest_ = (ip.is_v6() ? "[" + ip.to_string() + "]" : ip.to_string()) + ":" +
            std::to_string(f.port);
    if (!f.hostip.empty() && f.host != f.hostip) dest_ = f.host + "[" + ip.to_string() + "]:" +
                                                         std::to_string(f.port);
    asio::ip::tcp::endpoint ep(ip, f.port);

    auto fail_final = [&](ProxyFailure failure) {
      log_final(failure);
      fe_->proxy_failed(failure);
      last_failure_ = std::move(failure);
    };

    // Checks before connecting (§2.2, §2.3).
    if (ec) {
      fail_final({FailureType::Internal, "Invalid host IP " + log::sanitize(ip_text), {}});
      co_return false;
    }
    if (ci_.proxy_ttl <= 1) {
      fail_final({FailureType::RemoteConfig, "TTL reached zero - proxies appear to be looping?",
                  {}});
      co_return false;
    }
    if (ip == ci_.local_ip && f.port == ci_.local_port && params.user == user_) {
      fail_final({FailureType::Internal, "Proxying loops to itself", {}});
      co_return false;
    }
    if (!params.mech.empty() && !sasl::is_known_mech(params.mech)) {
      fail_final({FailureType::Internal, "Unsupported SASL mechanism " + params.mech, {}});
      co_return false;
    }

    const auto timeout =
        std::min(f.proxy_timeout.value_or(snap_->cfg.login.proxy_timeout), kMaxProxyTimeout);
    proxy_start_ = Clock::now();
    const auto deadline = proxy_start_ + timeout;
    reconnects_ = 0;
    watch_client();
    struct Unwatch {
      Session& s;
      ~Unwatch() { s.unwatch_client(); }
    } unwatch{*this};
    const std::string host_key = dest_;
    const auto fast_fail_after = snap_->cfg.login.proxy_host_immediate_failure_after;
    for (;;) {
      std::chrono::seconds down_for{0};
      int64_t last_ok = 0;
      if (governor_.host_fast_fail(host_key, fast_fail_after, down_for, last_ok)) {
        // Another login is already waiting on a host that has been failing
        // for a while: don't pile up, fail now and don't retry.
        fail_final({FailureType::Connect,
                    fmt::format("Host has been down for {} secs (last success was {})",
                                down_for.count(), last_ok),
                    {}});
        co_return false;
      }
      governor_.host_waiting(host_key, +1);
      auto failure = co_await attempt(f, params, ep, deadline);
      governor_.host_waiting(host_key, -1);
      if (!failure || failure->type != FailureType::Connect) governor_.host_result(host_key, true);
      else if (!stopped_ && !login_timed_out_ && !client_gone_) governor_.host_result(host_key, false);
      if (!failure) {
        governor_.record_auth_success(penalty_key());
        destuser_ = params.user;
        master_ = params.master;
        co_return true;
      }
      if (stopped_ || login_timed_out_) {
        if (login_timed_out_ && !stopped_)
          log_proxy(Level::Error, fmt::format("Logging in timed out (state={}, duration={}s)",
                                              last_state_, secs_since(start_)));
        last_failure_ = std::move(*failure);
        co_return false;
      }
      if (client_gone_) {
        log_proxy(Level::Info, fmt::format("Client disconnected during backend login "
                                           "(state={}, duration={}s)",
                                           last_state_, secs_since(start_)));
        co_return false;
      }
      auto remaining = deadline - Clock::now();
      if (failure_retryable(failure->type) && reconnects_ < snap_->cfg.login.proxy_max_reconnects &&
          remaining > kRetryMinRemaining) {
        ++reconnects_;
        log_proxy(Level::Warning, fmt::format("{}{} - reconnecting (attempt #{})",
                                              failure_log_prefix(failure->type), failure->reason,
                                              reconnects_));
        proxy_timer_.expires_after(kRetryDelay);
        co_await proxy_timer_.async_wait(use_nothrow);
        if (stopped_ || login_timed_out_ || client_gone_) co_return false;
        continue;
      }
      if (failure->type == FailureType::AuthReplied || failure->type == FailureType::AuthNotReplied)
        ++auth_failures_;
      fail_final(std::move(*failure));
      co_return false;
    }
  }

  /// While the backend login runs, notice a client that hangs up (its bytes
  /// are not read: pipelined commands stay queued for the relay). Only an
  /// orderly EOF counts; readable data ends the watch.
  void watch_client() {
    client_.socket().async_wait(
        asio::ip::tcp::socket::wait_read,
        [this, alive = std::weak_ptr<int>(alive_), gen = ++watch_gen_](const asio::error_code& ec) {
          if (ec || alive.expired() || gen != watch_gen_) return;
          char c;
          ssize_t n = ::recv(client_.socket().native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
          if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            client_gone_ = true;
            if (backend_) backend_->cancel();
            proxy_timer_.cancel();
          }
        });
  }
  void unwatch_client() {
    ++watch_gen_;
    client_.cancel();
  }

  void log_final(const ProxyFailure& f) {
    if (failure_is_auth(f.type)) {
      if (snap_->cfg.auth.verbose) log_proxy(Level::Info, "Login failed: " + f.reason);
    } else {
      log_proxy(Level::Error, std::string(failure_log_prefix(f.type)) + f.reason);
    }
  }

  std::string after_text() const {
    std::string s = fmt::format("after {} secs", secs_since(proxy_start_));
    if (reconnects_ > 0) s += fmt::format(", {} reconnects", reconnects_);
    if (!local_.empty()) s += ", local=" + local_;
    return s;
  }

  /// One backend connection attempt; nullopt on success (backend_ is logged in).
  Task<std::optional<ProxyFailure>> attempt(const passdb::ProxyFields& f,
                                            const BackendLoginParams& params,
                                            const asio::ip::tcp::endpoint& ep,
                                            Clock::time_point deadline) {
    proxy_timed_out_ = false;
    local_.clear();
    be_buf_.clear();
    bl_.reset();
    last_state_ = "";
    asio::ip::tcp::socket sock(client_.socket().get_executor());
    asio::error_code ec;
    sock.open(ep.protocol(), ec);
    if (!ec && !f.source_ip.empty()) {
      auto src = asio::ip::make_address(f.source_ip, ec);
      if (!ec) sock.bind(asio::ip::tcp::endpoint(src, 0), ec);
    }
    if (ec) co_return ProxyFailure{FailureType::Internal, "socket: " + ec.message(), {}};
    backend_.emplace(std::move(sock));

    proxy_timer_.expires_at(deadline);
    proxy_timer_.async_wait([this, alive = std::weak_ptr<int>(alive_), gen = ++proxy_gen_](
                                const asio::error_code& e) {
      if (e || alive.expired() || gen != proxy_gen_) return;
      proxy_timed_out_ = true;
      if (backend_) backend_->cancel();
    });
    struct TimerGuard {
      asio::steady_timer& t;
      unsigned& gen;
      ~TimerGuard() {
        ++gen;
        t.cancel();
      }
    } guard{proxy_timer_, proxy_gen_};

    auto [cec] = co_await backend_->socket().async_connect(ep, use_nothrow);
    {
      asio::error_code lec;
      auto lep = backend_->socket().local_endpoint(lec);
      if (!lec && lep.port() != 0) local_ = addr_text(lep.address()) + ":" + std::to_string(lep.port());
    }
    if (cec) {
      std::string what = proxy_timed_out_ ? "Connection timed out" : cec.message();
      if (login_timed_out_ || stopped_) what = "Aborted";
      backend_.reset();
      co_return ProxyFailure{FailureType::Connect,
                             fmt::format("connect({}, {}) failed: {} ({})", addr_text(ep.address()),
                                         ep.port(), what, after_text()),
                             {}};
    }

    bl_ = fe_->make_backend_login(params);
    if (std::string note = fe_->take_log_note(); !note.empty())
      log_client(Level::Warning, log::sanitize(note));
    last_state_ = bl_->state();
    if (f.tls == passdb::BackendTls::Implicit) {
      auto r = co_await backend_tls(f);
      if (r) co_return r;
    }

    for (;;) {
      std::string line;
      auto rf = co_await read_backend_line(line);
      if (rf) co_return rf;
      BackendEvent ev = bl_->on_line(line);
      for (;;) {
        last_state_ = bl_->state();
        if (!bl_->output().empty()) {
          auto wec = co_await backend_->write_all(bl_->output());
          bl_->wipe_output();
          if (wec) co_return backend_io_failure(wec);
        }
        if (ev != BackendEvent::StartTls) break;
        // Bytes the backend sent behind its STARTTLS reply were not protected
        // by TLS: drop them (command injection defence, like the client side).
        be_buf_.clear();
        auto r = co_await backend_tls(f);
        if (r) co_return r;
        ev = bl_->on_tls_ready();
      }
      last_state_ = bl_->state();
      if (ev == BackendEvent::Continue) continue;
      if (ev == BackendEvent::Success) co_return std::nullopt;
      co_return bl_->failure();
    }
  }

  Task<std::optional<ProxyFailure>> backend_tls(const passdb::ProxyFields& f) {
    SSL_CTX* ctx = f.any_cert ? snap_->backend_anycert_ctx.get() : snap_->backend_verify_ctx.get();
    auto hs = co_await backend_->handshake_client(ctx, f.host, !f.any_cert);
    if (hs.ok) co_return std::nullopt;
    if (proxy_timed_out_ || login_timed_out_ || stopped_)
      co_return ProxyFailure{FailureType::Connect,
                             fmt::format("Login timed out in state={} ({})", bl_->state(),
                                         after_text()),
                             {}};
    // A certificate problem is a configuration failure and is never retried;
    // anything else (peer closed, garbage) may be transient.
    co_return ProxyFailure{hs.cert_error ? FailureType::InternalConfig : FailureType::Connect,
                           "Failed to start SSL handshake: " + log::sanitize(hs.error) + " (" +
                               after_text() + ")",
                           {}};
  }

  ProxyFailure backend_io_failure(const asio::error_code& ec) {
    if (stopped_)
      return {FailureType::Connect,
              fmt::format("Aborted by process shutdown (state={}, duration={}s)", bl_->state(),
                          secs_since(start_)),
              {}};
    if (proxy_timed_out_)
      return {FailureType::Connect,
              fmt::format("Login timed out in state={} ({})", bl_->state(), after_text()), {}};
    std::string err = (ec == asio::error::eof) ? "" : ": " + ec.message();
    return {FailureType::Connect,
            fmt::format("Disconnected by server: Connection closed{} (state={}, duration={}s)", err,
                        bl_->state(), secs_since(start_)),
            {}};
  }

  Task<std::optional<ProxyFailure>> read_backend_line(std::string& line) {
    for (;;) {
      auto nl = be_buf_.find('\n');
      if (nl != std::string::npos) {
        size_t end = (nl > 0 && be_buf_[nl - 1] == '\r') ? nl - 1 : nl;
        if (end > kBackendMaxLine)
          co_return ProxyFailure{FailureType::Protocol, "Too long input line", {}};
        line.assign(be_buf_, 0, end);
        be_buf_.erase(0, nl + 1);
        co_return std::nullopt;
      }
      if (be_buf_.size() > kBackendMaxLine + 1)
        co_return ProxyFailure{FailureType::Protocol, "Too long input line", {}};
      asio::error_code ec;
      size_t n = co_await backend_->read_some(read_buffer(), kReadChunk, ec);
      if (ec) co_return backend_io_failure(ec);
      be_buf_.append(read_buffer(), n);
    }
  }

  // ---- relay --------------------------------------------------------------------
  Task<void> relay() {
    phase_ = Phase::Relay;
    governor_.backend_login_finished();
    ++login_gen_;
    login_timer_.cancel();
    std::string reply = bl_->client_reply();
    std::string pending = fe_->take_pending_input();
    // Backend bytes that arrived behind the success line belong to the client.
    reply += be_buf_;
    auto ec = co_await client_.write_all(reply);
    if (!ec && !pending.empty()) ec = co_await backend_->write_all(pending);
    core::secure_zero(reply);
    core::secure_zero(pending);

    std::string msg = "Started proxying to " + dest_;
    if (destuser_ != user_) msg += " as user " + log::sanitize(destuser_);
    if (!master_.empty()) msg += " (master " + log::sanitize(master_) + ")";
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - proxy_start_)
                  .count();
    msg += fmt::format(" ({}.{:03} secs", ms / 1000, ms % 1000);
    if (reconnects_ > 0) msg += fmt::format(", {} reconnects", reconnects_);
    msg += ")";
    log_proxy(Level::Info, msg);

    // Hand the two connections to a relay object; everything else of this
    // session (frontend, machines, buffers, coroutine frames) is freed.
    struct Ending {
      SessionRegistry* registry;
      Governor::Lease conn;  // the connection count, under the key it was admitted with
      Governor::Lease user;  // the per-user count (may be empty)
      std::string service;
      std::string prefix;    // "proxy(user,dest): "
      std::string elements;
    };
    auto ending = std::make_shared<Ending>(Ending{&registry_, std::move(conn_lease_),
                                                  std::move(user_lease_),
                                                  std::string(service()),
                                                  "proxy(" + log::sanitize(user_) + "," + dest_ + "): ",
                                                  elements()});
    auto done = [ending](const relay::Result& r) {
      std::string side;
      switch (r.side) {
        case relay::EndSide::Client:
          side = "Disconnected by client";
          break;
        case relay::EndSide::Server:
          side = "Disconnected by server";
          break;
        case relay::EndSide::Proxy:
          side = "Disconnected by proxy: Process shutting down";
          break;
      }
      if (!r.error.empty()) side += ": " + log::sanitize(r.error);
      // Release the counts before logging: whoever reacts to the log line
      // (or to the closed socket) may reconnect at once.
      ending->conn.release();
      ending->user.release();
      log::write(Level::Info, ending->service,
                 fmt::format("{}{} ({}s idle, in={}, out={}): {}", ending->prefix, side,
                             r.idle.count(), r.in, r.out, ending->elements));
    };
    if (ec) {
      relay::Result r;
      r.side = relay::EndSide::Client;
      r.error = ec.message();
      backend_->close();
      client_.close();
      done(r);
      co_return;
    }
    if (stopped_) {
      backend_->close();
      client_.close();
      relay::Result r;
      r.side = relay::EndSide::Proxy;
      done(r);
      co_return;
    }
    // Shutdown finds live relays through the registry (keyed by `ending`).
    relay::Options ropts;
    ropts.linger = snap_->cfg.login.relay_linger;
    auto* rl = relay::Relay::start(std::move(client_), std::move(*backend_), ropts,
                             [done, ending, reg = &registry_](const relay::Result& r) {
                               reg->relays.erase(ending.get());
                               done(r);
                             });
    registry_.relays.emplace(ending.get(), rl);
  }

  tls::Stream client_;
  std::optional<tls::Stream> backend_;
  std::shared_ptr<const Snapshot> snap_;
  ListenerInfo listener_;
  SessionRegistry& registry_;
  asio::thread_pool& pool_;
  Governor& governor_;
  asio::steady_timer login_timer_;
  asio::steady_timer proxy_timer_;
  asio::steady_timer delay_timer_;  // failure delay; cancelled by stop()
  Clock::time_point start_;
  Clock::time_point proxy_start_;
  ClientInfo ci_;
  std::unique_ptr<Frontend> fe_;
  std::unique_ptr<BackendLogin> bl_;
  std::string be_buf_;
  std::string user_;
  std::string method_;
  std::string dest_;
  std::string destuser_;
  mutable asio::ip::address rip_for_, lip_for_;
  mutable std::string rip_text_, lip_text_;
  std::string master_;
  std::string local_;
  std::string last_state_;
  std::optional<ProxyFailure> last_failure_;
  unsigned auth_attempts_ = 0;
  unsigned auth_failures_ = 0;
  unsigned reconnects_ = 0;
  Phase phase_ = Phase::PreLogin;
  Governor::Lease conn_lease_;  // Governor::admit_connection, under the TCP peer's key
  Governor::Lease user_lease_;  // Governor::admit_user
  unsigned login_gen_ = 0;
  unsigned watch_gen_ = 0;
  unsigned proxy_gen_ = 0;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);  // timer handlers hold weak refs
  bool stopped_ = false;
  bool login_timed_out_ = false;
  bool proxy_timed_out_ = false;
  bool client_gone_ = false;
};

void SessionRegistry::stop_all(bool force) {
  shutting_down = true;
  // stop() only cancels; sessions remove themselves when their coroutine ends.
  for (Session* s : sessions) s->stop(force);
  // A relay's stop() erases it from `relays` at once: iterate over a copy.
  std::vector<relay::Relay*> live;
  live.reserve(relays.size());
  for (auto& [key, r] : relays) live.push_back(r);
  for (relay::Relay* r : live) r->stop();
}


void start_session(asio::ip::tcp::socket socket, std::shared_ptr<const Snapshot> snapshot,
                   const ListenerInfo& listener, SessionRegistry& registry,
                   asio::thread_pool& auth_pool, Governor& governor) {
  auto exec = socket.get_executor();
  auto s = std::make_unique<Session>(std::move(socket), std::move(snapshot), listener, registry,
                                     auth_pool, governor);
  asio::co_spawn(exec, Session::main(std::move(s)), asio::detached);
}

}  // namespace portier::login
