#include "login/auth_flow.hpp"

#include <openssl/ssl.h>

#include "core/base64.hpp"
#include "core/secure.hpp"
#include "core/strings.hpp"
#include "core/text.hpp"
#include "sasl/oauth.hpp"

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

namespace {
/// A referral's host goes into the client's reply: a host name or an IP
/// address (letters, digits, `.`, `-`, `_`, `:`), nothing that could end the
/// URL or the response code early.
bool referral_host_ok(std::string_view host) {
  if (host.empty() || host.size() > 253) return false;
  for (unsigned char c : host) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '-' || c == '_' || c == ':';
    if (!ok) return false;
  }
  return true;
}
}  // namespace

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
      // A passdb's own failure text (auth_http's Auth-Status) for the client.
      if (auto r = lookup.reply.get("reason")) v.reason = *r;
      v.disconnect = lookup.disconnect;
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
  if (!pf.fields->proxy && !pf.fields->host.empty()) {
    const passdb::ProxyFields& f = *pf.fields;
    if (!referral_host_ok(f.host)) {
      v.reply = AuthFailure::TempFail;
      v.config_error = true;
      v.log_error = "referral: invalid host in passdb: " + core::one_line(f.host);
      return v;
    }
    Referral r;
    r.user = f.destuser;
    r.host = f.host;
    r.port = f.port;
    r.nologin = f.nologin;
    r.reason = !f.reason.empty() ? f.reason
               : f.nologin       ? "Try this server instead."
                                 : "Logged in, but you should use this server instead.";
    v.referral = std::move(r);
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

std::string oauth_failure_challenge(std::string_view mech,
                                    const std::optional<passdb::OAuthFailure>& f) {
  sasl::OAuthFailureInfo info;
  if (f) {
    info.status = f->status;
    info.scope = f->scope;
    info.openid_configuration = f->openid_configuration;
  }
  return core::base64_encode(sasl::oauth_failure_json(mech, info));
}

BackendLoginParams backend_params(const passdb::ProxyFields& f, sasl::Credentials& creds,
                                  const std::string& hostname, const ClientInfo& ci) {
  BackendLoginParams p;
  p.user = f.destuser.empty() ? creds.authcid : f.destuser;
  p.password = f.pass ? std::string_view(*f.pass) : creds.password.view();
  creds.password.clear();
  p.master = f.master;
  p.mech = core::to_upper(f.proxy_mech);
  p.starttls = f.tls == passdb::BackendTls::StartTls;
  p.tls = f.tls != passdb::BackendTls::None;
  p.nopipelining = f.nopipelining;
  p.not_trusted = f.not_trusted;
  p.noauth = f.noauth;
  p.forward = f.forward;
  p.hostname = hostname;
  p.host = f.host;
  p.port = f.port;
  p.client = &ci;
  return p;
}

net::Task<void> FailureDelay::wait(std::string key, const config::Config& cfg,
                                   const Abort& abort, Counters::Live* counters) {
  governor_.record_auth_failure(key);
  auto d = governor_.failure_delay(key, cfg.auth.failure_delay, cfg.login.auth_penalty_max);
  if (d.count() <= 0 || abort.stopped) co_return;
  if (counters) Counters::failure_delay(*counters, d, d > cfg.auth.failure_delay);
  timer_.expires_after(d);
  co_await timer_.async_wait(net::use_nothrow);
}

// The passdb chain's lookup: entries answer inline when that costs nothing
// (no thread hop); password hashing runs on the auth pool and blocking
// drivers on their own pools, never on this event loop.
Task<passdb::Lookup> AuthFlow::verify(const sasl::Credentials& c) {
  user_ = c.authcid;
  passdb::Request req = request(c.authcid, log_.method());
  req.password = c.password.view();
  // EXTERNAL: the certificate proved the identity and there is no password:
  // the passdb only looks the user up (Dovecot's nopassword semantics).
  req.lookup_only = sasl::needs_external_id(c.mech);
  co_return co_await lookup(req);
}

Task<passdb::Lookup> AuthFlow::redirect_lookup(std::string_view host_next,
                                               std::string_view host_attempts) {
  passdb::Request req = request(user_, "EXTERNAL");
  req.lookup_only = true;
  req.redirect_host_next = host_next;
  req.redirect_host_attempts = host_attempts;
  co_return co_await lookup(req);
}

passdb::Request AuthFlow::request(std::string_view user, std::string_view mechanism) const {
  passdb::Request req;
  req.user = user;
  req.protocol = protocol_.name;
  req.service = protocol_.service;
  req.mechanism = mechanism;
  req.remote_ip = log_.rip();
  req.remote_port = ci_.remote_port;
  req.local_ip = log_.lip();
  req.local_port = ci_.local_port;
  req.session_id = ci_.session_id;
  req.tls = ci_.tls;
  req.local_name = ci_.local_name;
  req.secured = ci_.secured();
  req.cert_valid = ci_.cert_valid;
  req.login_attempt = attempt_;
  if (ssl_ && ci_.tls) {
    req.tls_protocol = SSL_get_version(ssl_);
    if (const SSL_CIPHER* cipher = SSL_get_current_cipher(ssl_)) req.tls_cipher = SSL_CIPHER_get_name(cipher);
  }
  req.hashing = &pool_;
  return req;
}

Task<passdb::Lookup> AuthFlow::lookup(passdb::Request& req) {
  const auto t0 = std::chrono::steady_clock::now();
  passdb::Lookup l = co_await snap_->passdbs.lookup(req);
  count_passdb(l, std::chrono::duration_cast<std::chrono::microseconds>(
                      std::chrono::steady_clock::now() - t0));
  co_return l;
}

// Dovecot's auth_passdb_request_finished results: ok, password_mismatch,
// user_unknown, internal_failure (kPassdbResultNames order).
void AuthFlow::count_passdb(const passdb::Lookup& l, std::chrono::microseconds took) {
  size_t result = 3;
  switch (l.result) {
    case passdb::Result::Ok:
      result = 0;
      break;
    case passdb::Result::Mismatch:
      result = 1;
      break;
    case passdb::Result::UnknownUser:
      result = 2;
      break;
    case passdb::Result::TempFail:
      break;
  }
  Counters::passdb_request(Counters::local().passdb(l.passdb.empty() ? "none" : l.passdb), result, took);
}

Task<AuthVerdict> AuthFlow::run(const sasl::Credentials& creds) {
  if (auto v = check_identity(creds)) {
    log_.emit(events::AuthRefused{*v->refused, snap_->passdbs.log_name(protocol_.name), {},
                                  snap_->cfg.auth.verbose});
    co_return std::move(*v);
  }
  passdb::Lookup lookup = co_await verify(creds);
  if (abort_.any()) {
    AuthVerdict cut;
    cut.aborted = true;
    co_return cut;
  }
  AuthVerdict v = judge(lookup, protocol_);
  if (v.proxy && sasl::needs_external_id(creds.mech) && !v.fields.pass) {
    // No client password exists to replay: the backend login needs `pass`
    // (with `master`: the master user's password).
    v.proxy = false;
    v.reply = AuthFailure::TempFail;
    v.config_error = true;
    v.log_error = "EXTERNAL login needs a pass field (and master) from the passdb: "
                  "the client sent no password";
  }
  // The OAuth mechanisms tell a refused client why, in a last challenge.
  if (v.failed_login && sasl::is_oauth_mech(creds.mech))
    v.sasl_challenge = oauth_failure_challenge(creds.mech, lookup.oauth_failure);
  if (v.referral) {
    if (v.referral->user.empty()) v.referral->user = creds.authcid;
    v.referral->mech = log_.method();
  }
  if (v.refused)
    log_.emit(events::AuthRefused{*v.refused, lookup.passdb, v.log_error, snap_->cfg.auth.verbose});
  else if (v.config_error)
    log_.emit(events::ProxyConfigError{v.log_error});
  co_return v;
}

}  // namespace portier::login
