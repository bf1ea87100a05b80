#include "login/backend_driver.hpp"

#include <sys/socket.h>

#include <asio/error.hpp>
#include <cerrno>

#include "log/log.hpp"
#include "net/address.hpp"
#include "net/proxy_protocol.hpp"
#include "net/readiness.hpp"
#include "net/socket.hpp"
#include "login/prelogin_io.hpp"
#include "core/secure.hpp"
#include "sasl/sasl.hpp"

namespace portier::login {

using net::Task;
using net::use_nothrow;

namespace {

long long secs_since(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - t).count();
}
}  // namespace

// ---- decisions (pure) ---------------------------------------------------------

std::string dest_text(const passdb::ProxyFields& f, const asio::ip::address& ip) {
  if (!f.hostip.empty() && f.host != f.hostip)
    return f.host + "[" + net::to_text(ip) + "]:" + std::to_string(f.port);
  return (ip.is_v6() ? "[" + net::to_text(ip) + "]" : net::to_text(ip)) + ":" +
         std::to_string(f.port);
}

std::string proxy_header(unsigned version, const ClientInfo& ci) {
  const asio::ip::tcp::endpoint src(ci.remote_ip, ci.remote_port), dst(ci.local_ip, ci.local_port);
  if (version == 1) return net::proxy::serialize_v1(src, dst);
  if (version != 2) return {};
  std::optional<net::proxy::SslInfo> ssl;
  if (ci.tls || ci.end_client_tls) ssl.emplace();
  return net::proxy::serialize_v2(src, dst, ssl, ci.local_name);
}

std::optional<ProxyFailure> precheck(const passdb::ProxyFields& f, bool ip_ok,
                                     const asio::ip::address& ip, const ClientInfo& ci,
                                     const BackendLoginParams& params,
                                     std::string_view login_user) {
  if (!ip_ok)
    return ProxyFailure{FailureType::Internal,
                        "Invalid host IP " + log::sanitize(f.hostip.empty() ? f.host : f.hostip),
                        {}};
  if (ci.proxy_ttl <= 1)
    return ProxyFailure{FailureType::RemoteConfig,
                        "TTL reached zero - proxies appear to be looping?", {}};
  if (ip == ci.local_ip && f.port == ci.local_port && params.user == login_user)
    return ProxyFailure{FailureType::Internal, "Proxying loops to itself", {}};
  if (!params.mech.empty() && !sasl::is_client_mech(params.mech))
    return ProxyFailure{FailureType::InternalConfig, "Unsupported SASL mechanism " + params.mech,
                        {}};
  return std::nullopt;
}

std::variant<asio::ip::tcp::endpoint, ProxyFailure> redirect_endpoint(
    std::string_view target, const asio::ip::tcp::endpoint& current,
    const std::vector<asio::ip::tcp::endpoint>& visited, const ClientInfo& ci, unsigned hops) {
  auto parsed = parse_redirect_target(target, current.port());
  if (auto* bad = std::get_if<ProxyFailure>(&parsed)) return std::move(*bad);
  const auto& t = std::get<RedirectTarget>(parsed);
  asio::error_code ec;
  auto ip = asio::ip::make_address(t.host, ec);
  if (ec)
    return ProxyFailure{FailureType::InternalConfig,
                        "Redirect to " + log::sanitize(target) + ": Failed to parse IP '" +
                            log::sanitize(t.host) + "' (DNS lookups not supported)",
                        {}};
  asio::ip::tcp::endpoint next(ip, t.port);
  if (auto loop = redirect_loop(next, visited, ci.proxy_ttl, hops)) return std::move(*loop);
  return next;
}

LineCut next_backend_line(std::string& buf, std::string& line) {
  auto nl = buf.find('\n');
  if (nl == std::string::npos)
    return buf.size() > kBackendMaxLine + 1 ? LineCut::TooLong : LineCut::NeedMore;
  size_t end = (nl > 0 && buf[nl - 1] == '\r') ? nl - 1 : nl;
  if (end > kBackendMaxLine) return LineCut::TooLong;
  line.assign(buf, 0, end);
  buf.erase(0, nl + 1);
  return LineCut::Line;
}

AfterFailure next_after_failure(FailureType type, unsigned reconnects, unsigned max_reconnects,
                                Clock::duration remaining) {
  if (failure_retryable(type) && reconnects < max_reconnects && remaining > kRetryMinRemaining)
    return AfterFailure::Retry;
  return AfterFailure::GiveUp;
}

Clock::duration login_timeout(const passdb::ProxyFields& f, std::chrono::milliseconds configured) {
  return std::min(f.proxy_timeout.value_or(configured),
                  std::chrono::milliseconds(passdb::kMaxProxyTimeout));
}

// ---- the driver ---------------------------------------------------------------

BackendDriver::BackendDriver(tls::Stream& client, const Snapshot& snap, Governor& gov,
                             SessionLog& log, const Abort& abort, Clock::time_point session_start)
    : client_(client), snap_(snap), governor_(gov), log_(log), abort_(abort),
      timer_(client.socket().get_executor()), deadline_(client.socket().get_executor()),
      session_start_(session_start) {}

void BackendDriver::cancel() {
  if (backend_) backend_->cancel();
  timer_.cancel();
  deadline_.cancel();
}

BackendDriver::Result BackendDriver::give_up(Frontend& fe, ProxyFailure f) {
  log_.emit(events::ProxyFailed{&f, snap_.cfg.auth.verbose}, last_state_);
  fe.proxy_failed(f);
  failure_ = std::move(f);
  return Result::Failed;
}

Task<BackendDriver::Result> BackendDriver::run(Frontend& fe, const passdb::ProxyFields& f,
                                               BackendLoginParams& params, RedirectAuth* reauth) {
  asio::error_code ec;
  asio::ip::address ip = asio::ip::make_address(f.hostip.empty() ? f.host : f.hostip, ec);
  log_.set_dest(dest_text(f, ip));
  if (auto pre = precheck(f, !ec, ip, *params.client, params, log_.user()))
    co_return give_up(fe, std::move(*pre));

  asio::ip::tcp::endpoint ep(ip, f.port);
  std::vector<asio::ip::tcp::endpoint> visited{ep};  // loop check for backend referrals
  start_ = Clock::now();
  const auto deadline = start_ + login_timeout(f, snap_.cfg.login.proxy_timeout);
  reconnects_ = 0;
  watch_client();
  struct Unwatch {
    BackendDriver& d;
    ~Unwatch() { d.unwatch_client(); }
  } unwatch{*this};
  std::string host_key = log_.dest();
  for (;;) {
    std::chrono::seconds down_for{0};
    int64_t last_ok = 0;
    if (governor_.host_fast_fail(host_key, snap_.cfg.login.proxy_host_immediate_failure_after,
                                 down_for, last_ok)) {
      // Another login is already waiting on a host that has been failing for
      // a while: don't pile up, fail now and don't retry.
      co_return give_up(fe, {FailureType::Connect,
                             fmt::format("Host has been down for {} secs (last success was {})",
                                         down_for.count(), last_ok),
                             {}});
    }
    governor_.host_waiting(host_key, +1);
    auto failure = co_await attempt(fe, f, params, ep, deadline);
    governor_.host_waiting(host_key, -1);
    if (!failure || failure->type != FailureType::Connect) governor_.host_result(host_key, true);
    else if (!abort_.any() && !client_gone_) governor_.host_result(host_key, false);
    if (!failure) co_return Result::LoggedIn;
    if (abort_.any()) {
      if (abort_.login_timed_out && !abort_.stopped)
        log_.emit(events::ProxyTimedOut{last_state_, secs_since_session()});
      failure_ = std::move(*failure);
      co_return Result::Aborted;
    }
    if (client_gone_) {
      log_.emit(events::ClientGone{last_state_, secs_since_session()});
      co_return Result::Aborted;
    }
    if (failure->type == FailureType::AuthRedirect && !failure->redirect.empty()) {
      // The backend referred the login elsewhere: a fresh dialogue there,
      // within the same deadline (not a reconnect).
      RedirectStep step;
      if (reauth) {
        step = co_await reauth_step(*reauth, failure->redirect, ep, visited, params);
        if (abort_.any() || client_gone_) co_return Result::Aborted;
      } else {
        auto next = redirect_endpoint(failure->redirect, ep, visited, *params.client,
                                      static_cast<unsigned>(visited.size() - 1));
        if (auto* to = std::get_if<asio::ip::tcp::endpoint>(&next))
          step = RedirectHop{*to, endpoint_text(*to)};
        else
          step = std::get<ProxyFailure>(std::move(next));
      }
      if (auto* stop = std::get_if<ProxyFailure>(&step)) co_return give_up(fe, std::move(*stop));
      if (auto* r = std::get_if<Referral>(&step)) co_return refer(fe, std::move(*r), params);
      auto& hop = std::get<RedirectHop>(step);
      ep = hop.ep;
      visited.push_back(ep);
      log_.emit(events::ProxyRedirected{&*failure, hop.dest}, last_state_);
      log_.set_dest(hop.dest);
      host_key = hop.dest;
      continue;
    }
    if (next_after_failure(failure->type, reconnects_, snap_.cfg.login.proxy_max_reconnects,
                           deadline - Clock::now()) == AfterFailure::GiveUp)
      co_return give_up(fe, std::move(*failure));
    ++reconnects_;
    log_.emit(events::ProxyRetry{&*failure, reconnects_}, last_state_);
    timer_.expires_after(kRetryDelay);
    co_await timer_.async_wait(use_nothrow);
    if (abort_.any() || client_gone_) co_return Result::Aborted;
  }
}

// proxy_redirect_reauth: the passdb decides where the referral leads.
Task<BackendDriver::RedirectStep> BackendDriver::reauth_step(
    RedirectAuth& auth, const std::string& target, const asio::ip::tcp::endpoint& current,
    const std::vector<asio::ip::tcp::endpoint>& visited, BackendLoginParams& params) {
  auto parsed = parse_redirect_target(target, current.port());
  if (auto* bad = std::get_if<ProxyFailure>(&parsed)) co_return std::move(*bad);
  const RedirectTarget t = std::get<RedirectTarget>(std::move(parsed));
  const std::string next = t.host_port();
  const std::string attempts = attempts_text(visited);
  const passdb::Lookup lookup = co_await auth.redirect_lookup(next, attempts);
  ReauthVerdict v = judge_reauth(lookup, auth.protocol(), t);
  if (auto* f = std::get_if<ProxyFailure>(&v)) co_return std::move(*f);
  if (auto* r = std::get_if<Referral>(&v)) co_return std::move(*r);
  const passdb::ProxyFields& pf = std::get<passdb::ProxyFields>(v);
  asio::error_code ec;
  const std::string& host = pf.hostip.empty() ? pf.host : pf.hostip;
  auto ip = asio::ip::make_address(host, ec);
  if (ec)
    co_return ProxyFailure{FailureType::InternalConfig,
                           "Redirect to " + log::sanitize(next) + ": invalid host IP '" +
                               log::sanitize(host) + "' from the passdb (DNS lookups not supported)",
                           {}};
  asio::ip::tcp::endpoint ep(ip, pf.port);
  if (auto loop = redirect_loop(ep, visited, params.client->proxy_ttl,
                                static_cast<unsigned>(visited.size() - 1)))
    co_return std::move(*loop);
  if (!pf.destuser.empty()) params.user = pf.destuser;
  co_return RedirectHop{ep, dest_text(pf, ip)};
}

// A re-authentication answered nologin + host: refer the client, end the login.
BackendDriver::Result BackendDriver::refer(Frontend& fe, Referral r, const BackendLoginParams& params) {
  if (r.user.empty()) r.user = params.user;
  r.mech = log_.method();
  log_.emit(events::ClientRedirected{r.host}, last_state_);
  fe.referred(r);
  failure_ = ProxyFailure{FailureType::AuthRedirect, "Redirected to " + log::sanitize(r.host), {}};
  return Result::Failed;
}

long long BackendDriver::secs_since_session() const { return secs_since(session_start_); }

// While the backend login runs, notice a client that hangs up (its bytes are
// not read: pipelined commands stay queued for the relay). Only an orderly
// EOF counts; readable data ends the watch.
void BackendDriver::watch_client() {
  net::async_wait_ready(
      client_.socket(), asio::ip::tcp::socket::wait_read,
      [this, alive = std::weak_ptr<int>(alive_), gen = ++watch_gen_](const asio::error_code& ec) {
        if (ec || alive.expired() || gen != watch_gen_) return;
        char c;
        ssize_t n = ::recv(client_.socket().native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
          client_gone_ = true;
          cancel();
        }
      });
}

// The watch is retired, not cancelled: its wait stays queued on the client
// socket until the next byte or the close, so the relay's first read wait
// queues behind it without an EPOLL_CTL_MOD (one system call per login, for
// ~0.2 KiB per idle session: docs/BENCHMARKS.md). Its handler sees the
// generation change (or the driver gone) and does nothing.
void BackendDriver::unwatch_client() { ++watch_gen_; }

std::string BackendDriver::after_text() const {
  std::string s = fmt::format("after {} secs", secs_since(start_));
  if (reconnects_ > 0) s += fmt::format(", {} reconnects", reconnects_);
  // The backend connection's local address, asked only when a log line
  // needs it (not once per login).
  if (backend_) {
    asio::error_code lec;
    auto lep = backend_->socket().local_endpoint(lec);
    if (!lec && lep.port() != 0)
      s += ", local=" + addr_text(lep.address()) + ":" + std::to_string(lep.port());
  }
  return s;
}

void BackendDriver::arm_deadline(Clock::time_point deadline) {
  deadline_.arm_at(deadline, [this] {
    timed_out_ = true;
    if (backend_) backend_->cancel();
  });
}

// One backend connection attempt; nullopt on success (backend_ is logged in).
Task<std::optional<ProxyFailure>> BackendDriver::attempt(Frontend& fe,
                                                         const passdb::ProxyFields& f,
                                                         const BackendLoginParams& params,
                                                         const asio::ip::tcp::endpoint& ep,
                                                         Clock::time_point deadline) {
  timed_out_ = false;
  be_buf_.clear();
  bl_.reset();
  last_state_ = "";
  arm_deadline(deadline);
  struct DeadlineGuard {
    net::Deadline& d;
    ~DeadlineGuard() { d.cancel(); }
  } guard{deadline_};
  if (auto failure = co_await connect(f, ep)) co_return failure;
  bl_ = fe.make_backend_login(params);
  // A note about the login (Submission's ignored XCLIENT LOGIN) is logged once
  // the connection is up, as when connect() was awaited.
  pending_note_ = fe.take_log_note();
  if (!connecting_) emit_pending_note();
  last_state_ = bl_->state();
  // The PROXY header goes first, before TLS and the protocol (the backend
  // learns the client's addresses from it, like Dovecot's haproxy = yes).
  const unsigned pp = f.proxy_protocol.value_or(snap_.cfg.backend.proxy_protocol);
  if (pp != 0 && params.client) {
    const std::string header = proxy_header(pp, *params.client);
    if (auto wec = co_await backend_->write_all(header)) co_return io_failure(wec);
  }
  if (f.tls == passdb::BackendTls::Implicit) {
    if (auto r = co_await backend_tls(f)) co_return r;
  }
  co_return co_await dialogue(f);
}

Task<std::optional<ProxyFailure>> BackendDriver::connect(const passdb::ProxyFields& f,
                                                         const asio::ip::tcp::endpoint& ep) {
  asio::error_code ec;
  auto sock = net::open_socket(client_.socket().get_executor(), ep.protocol(), ec);
  if (!ec && !f.source_ip.empty()) {
    auto src = asio::ip::make_address(f.source_ip, ec);
    if (!ec) sock.bind(asio::ip::tcp::endpoint(src, 0), ec);
  }
  if (ec) co_return ProxyFailure{FailureType::Internal, "socket: " + ec.message(), {}};
  backend_.emplace(std::move(sock));
  connect_ep_ = ep;
  connecting_ = false;
  asio::error_code cec;
  if (f.tls == passdb::BackendTls::Implicit ||
      f.proxy_protocol.value_or(snap_.cfg.backend.proxy_protocol) != 0) {
    // We speak first (TLS ClientHello, PROXY header): wait until the
    // connection is up.
    cec = co_await net::connect(backend_->socket(), ep);
  } else {
    // The backend speaks first: the banner read waits for the connection too.
    cec = net::connect_start(backend_->socket(), ep, connecting_);
  }
  if (!cec) co_return std::nullopt;
  ProxyFailure failure = connect_failure(cec);
  backend_.reset();
  co_return failure;
}

// Whether a read error before the first byte of a deferred connect is the
// connect's own failure: what connect(2) reports (a refusal, an unreachable
// or silent host), or our deadline/abort while the handshake still ran. A
// reset or end of stream needs an established connection.
bool BackendDriver::connect_error(const asio::error_code& ec) {
  namespace e = asio::error;
  if (ec == e::operation_aborted) return !net::connected(backend_->socket());
  return ec == e::connection_refused || ec == e::timed_out || ec == e::host_unreachable ||
         ec == e::network_unreachable || ec == asio::error_code(EHOSTDOWN, asio::system_category()) || ec == e::network_down;
}

void BackendDriver::emit_pending_note() {
  if (!pending_note_.empty()) log_.emit(events::Note{std::exchange(pending_note_, {})});
}

ProxyFailure BackendDriver::connect_failure(const asio::error_code& ec) const {
  std::string what = timed_out_ ? "Connection timed out" : ec.message();
  if (abort_.any()) what = "Aborted";
  return {FailureType::Connect,
          fmt::format("connect({}, {}) failed: {} ({})", addr_text(connect_ep_.address()),
                      connect_ep_.port(), what, after_text()),
          {}};
}

// The protocol machine, line by line, until it says Success or Failure.
Task<std::optional<ProxyFailure>> BackendDriver::dialogue(const passdb::ProxyFields& f) {
  for (;;) {
    std::string line;
    if (auto rf = co_await read_line(line)) co_return rf;
    // A failure is counted under the state it arrived in ("id+login/banner":
    // the reply to ID or LOGIN), not the state after the failing reply.
    std::string arrived_in = last_state_;
    BackendEvent ev = bl_->on_line(line);
    for (;;) {
      last_state_ = bl_->state();
      if (!bl_->output().empty()) {
        auto wec = co_await backend_->write_all(bl_->output());
        bl_->wipe_output();
        if (wec) co_return io_failure(wec);
      }
      if (ev != BackendEvent::StartTls) break;
      // Bytes the backend sent behind its STARTTLS reply were not protected by
      // TLS: drop them (command injection defence, like the client side).
      be_buf_.clear();
      if (auto r = co_await backend_tls(f)) co_return r;
      ev = bl_->on_tls_ready();
    }
    last_state_ = bl_->state();
    if (ev == BackendEvent::Continue) continue;
    if (ev == BackendEvent::Success) co_return std::nullopt;
    last_state_ = std::move(arrived_in);
    co_return bl_->failure();
  }
}

Task<std::optional<ProxyFailure>> BackendDriver::backend_tls(const passdb::ProxyFields& f) {
  SSL_CTX* ctx = f.any_cert ? snap_.backend_anycert_ctx.get() : snap_.backend_verify_ctx.get();
  auto hs = co_await backend_->handshake_client(ctx, f.host, !f.any_cert);
  Counters::tls_handshake(log_.counters(), TlsLeg::Backend, hs.ok);
  if (hs.ok) co_return std::nullopt;
  if (timed_out_ || abort_.any())
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

ProxyFailure BackendDriver::io_failure(const asio::error_code& ec) const {
  if (abort_.stopped)
    return {FailureType::Connect,
            fmt::format("{} (state={}, duration={}s)",
                        abort_.kicked ? "Kicked by admin" : "Aborted by process shutdown", bl_->state(),
                        secs_since_session()),
            {}};
  if (timed_out_)
    return {FailureType::Connect,
            fmt::format("Login timed out in state={} ({})", bl_->state(), after_text()), {}};
  std::string err = (ec == asio::error::eof) ? "" : ": " + ec.message();
  return {FailureType::Connect,
          fmt::format("Disconnected by server: Connection closed{} (state={}, duration={}s)", err,
                      bl_->state(), secs_since_session()),
          {}};
}

Task<std::optional<ProxyFailure>> BackendDriver::read_line(std::string& line) {
  for (;;) {
    switch (next_backend_line(be_buf_, line)) {
      case LineCut::Line:
        co_return std::nullopt;
      case LineCut::TooLong:
        co_return ProxyFailure{FailureType::Protocol, "Too long input line", {}};
      case LineCut::NeedMore:
        break;
    }
    asio::error_code ec;
    // While the connect runs nothing can be there yet: wait first (the fresh
    // socket needs no EPOLL_CTL_MOD for it, net/readiness.hpp) instead of
    // probing with a recv that would only say EAGAIN.
    const bool wait_first = connecting_;
    size_t n = co_await backend_->read_some(read_buffer(), kReadChunk, ec, wait_first);
    if (ec && connecting_ && connect_error(ec)) {
      // The connect itself failed (refused, unreachable, timed out, aborted):
      // the same failure, text and state as a connect that was awaited.
      connecting_ = false;
      last_state_.clear();
      co_return connect_failure(ec);
    }
    if (connecting_) {
      connecting_ = false;
      emit_pending_note();
    }
    if (ec) co_return io_failure(ec);
    be_buf_.append(read_buffer(), n);
    wipe_read_buffer(n);
  }
}

}  // namespace portier::login
