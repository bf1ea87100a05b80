#include "login/auth_flow.hpp"

#include <asio/co_spawn.hpp>
#include <asio/use_awaitable.hpp>

#include "core/secure.hpp"
#include "core/strings.hpp"

namespace portier::login {

using net::Task;
using Why = events::AuthRefused::Why;

std::optional<AuthVerdict> check_identity(const sasl::Credentials& c) {
  if (c.authzid.empty() || c.authzid == c.authcid) return std::nullopt;
  AuthVerdict v;
  v.failed_login = true;
  v.refused = Why::AuthzDenied;
  return v;
}

AuthVerdict judge(const passdb::Lookup& lookup, const Protocol& protocol) {
  AuthVerdict v;
  switch (lookup.result) {
    case passdb::Result::Ok:
      break;
    case passdb::Result::TempFail:
      v.reply = AuthFailure::TempFail;
      v.refused = Why::TempFail;
      v.log_error = lookup.error;
      return v;
    case passdb::Result::Mismatch:
    case passdb::Result::UnknownUser:
      v.failed_login = true;
      v.refused = lookup.result == passdb::Result::Mismatch ? Why::Mismatch : Why::UnknownUser;
      return v;
  }
  auto pf = passdb::parse_proxy_fields(lookup.reply, protocol.default_port,
                                       protocol.default_tls_port);
  if (!pf.fields) {
    v.reply = AuthFailure::TempFail;
    v.config_error = true;
    v.log_error = pf.error;
    return v;
  }
  if (!pf.fields->proxy) {
    if (pf.fields->nologin) {
      v.reply = AuthFailure::Disabled;
      v.reason = pf.fields->reason;
    } else {
      // portier only proxies: a passdb entry without `proxy` has nowhere to go.
      v.reply = AuthFailure::TempFail;
      v.config_error = true;
      v.log_error = "passdb reply has no proxy field (portier does not log in locally)";
    }
    return v;
  }
  v.proxy = true;
  v.fields = std::move(*pf.fields);
  return v;
}

BackendLoginParams backend_params(const passdb::ProxyFields& f, sasl::Credentials& creds,
                                  const std::string& hostname, const ClientInfo& ci) {
  BackendLoginParams p;
  p.user = f.destuser.empty() ? creds.authcid : f.destuser;
  p.password = f.pass ? *f.pass : creds.password;
  core::secure_zero(creds.password);
  p.master = f.master;
  p.mech = core::to_upper(f.proxy_mech);
  p.starttls = f.tls == passdb::BackendTls::StartTls;
  p.tls = f.tls != passdb::BackendTls::None;
  p.nopipelining = f.nopipelining;
  p.not_trusted = f.not_trusted;
  p.noauth = f.noauth;
  p.forward = f.forward;
  p.hostname = hostname;
  p.client = &ci;
  return p;
}

net::Task<void> FailureDelay::wait(std::string key, const config::Config& cfg,
                                   const Abort& abort) {
  governor_.record_auth_failure(key);
  auto d = governor_.failure_delay(key, cfg.auth.failure_delay, cfg.login.auth_penalty_max);
  if (d.count() <= 0 || abort.stopped) co_return;
  timer_.expires_after(d);
  co_await timer_.async_wait(net::use_nothrow);
}

namespace {
// Runs on the auth thread pool. A plain coroutine function, not a capturing
// lambda: GCC 12 mis-handles lambda captures in coroutine frames.
Task<passdb::Lookup> verify_on_pool(std::shared_ptr<const Snapshot> snap,
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
}  // namespace

Task<passdb::Lookup> AuthFlow::verify(const sasl::Credentials& c) {
  passdb::RequestInfo info{std::string(protocol_.name), log_.rip(), log_.lip()};
  // No hashing needed (nopassword, cleartext scheme, unknown user): answer
  // here and skip two thread hand-offs.
  bool inline_ok = true;
  passdb::Lookup quick;
  quick.result = passdb::Result::UnknownUser;
  for (const auto& db : snap_->passdbs) {
    if (!db->serves(info.protocol)) continue;
    auto l = db->verify_inline(c.authcid, c.password, info);
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
                                    verify_on_pool(snap_, std::move(info), c.authcid, c.password),
                                    asio::use_awaitable);
}

Task<AuthVerdict> AuthFlow::run(const sasl::Credentials& creds) {
  static constexpr std::string_view kDriver = "passwd-file";
  if (auto v = check_identity(creds)) {
    log_.emit(events::AuthRefused{*v->refused, kDriver, {}, snap_->cfg.auth.verbose});
    co_return std::move(*v);
  }
  passdb::Lookup lookup = co_await verify(creds);
  if (abort_.any()) {
    AuthVerdict cut;
    cut.aborted = true;
    co_return cut;
  }
  AuthVerdict v = judge(lookup, protocol_);
  if (v.refused)
    log_.emit(events::AuthRefused{*v.refused, kDriver, v.log_error, snap_->cfg.auth.verbose});
  else if (v.config_error)
    log_.emit(events::ProxyConfigError{v.log_error});
  co_return v;
}

}  // namespace portier::login
