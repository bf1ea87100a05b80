#include "login/log_sink.hpp"

#include <cctype>
#include <cstring>

#include "login/counters.hpp"
#include "net/address.hpp"

namespace portier::login {

using log::Level;

std::string addr_text(const asio::ip::address& a) { return net::plain_text(a); }

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

// The client's addresses as text, formatted once (a trusted ID/XCLIENT may
// change them, so the cache is keyed by the address).
const std::string& SessionLog::rip() const {
  if (rip_for_ != ci_.remote_ip || rip_text_.empty()) {
    rip_for_ = ci_.remote_ip;
    rip_text_ = addr_text(ci_.remote_ip);
  }
  return rip_text_;
}

const std::string& SessionLog::lip() const {
  if (lip_for_ != ci_.local_ip || lip_text_.empty()) {
    lip_for_ = ci_.local_ip;
    lip_text_ = addr_text(ci_.local_ip);
  }
  return lip_text_;
}

std::string SessionLog::elements() const {
  std::string e = "user=<" + log::sanitize(user_) + ">";
  if (!method_.empty()) e += ", method=" + method_;
  e += ", rip=" + rip();
  e += ", lip=" + lip();
  if (ci_.tls) e += ", TLS";
  else if (ci_.secured()) e += ", secured";
  e += ", session=<" + log_session_id(ci_.session_id) + ">";
  return e;
}

std::string SessionLog::proxy_prefix() const {
  return "proxy(" + log::sanitize(user_) + "," + dest_ + "): ";
}

log::Fields SessionLog::fields(std::string_view event) const {
  log::Fields f{{"event", std::string(event)}, {"user", log::sanitize(user_)}};
  if (!method_.empty()) f.push_back({"method", method_});
  f.push_back({"rip", rip()});
  f.push_back({"lip", lip()});
  f.push_back(log::flag("tls", ci_.tls));
  f.push_back(log::flag("secured", ci_.secured()));
  f.push_back({"session", log_session_id(ci_.session_id)});
  if (!dest_.empty()) f.push_back({"dest", dest_});
  return f;
}

LogContext SessionLog::context() const {
  LogContext c{std::string(service_), proxy_prefix(), elements(), &counters(), {}};
  if (log::json()) c.fields = fields("relay_ended");
  return c;
}

void SessionLog::client_line(const log::Fields* f, Level lvl, std::string_view msg) const {
  if (!log::enabled(lvl)) return;
  log::write(lvl, service_, std::string(msg) + ": " + elements(), f);
}

void SessionLog::proxy_line(const log::Fields* f, Level lvl, std::string_view msg) const {
  if (!log::enabled(lvl)) return;
  log::write(lvl, service_, proxy_prefix() + std::string(msg) + ": " + elements(), f);
}

void SessionLog::auth_line(const log::Fields* f, Level lvl, std::string_view driver,
                           std::string_view msg) const {
  if (!log::enabled(lvl)) return;
  log::write(lvl, "auth",
             fmt::format("{}({},{},<{}>): {}", driver, log::sanitize(user_), rip(),
                         log_session_id(ci_.session_id), msg),
             f);
}

void render_relay_end(const LogContext& ctx, const relay::Result& r);

namespace {
std::string_view failure_what(FailureType t) {
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
}  // namespace

std::string auth_summary(unsigned attempts, std::chrono::steady_clock::time_point since,
                         const ProxyFailure* last) {
  const auto secs = std::chrono::duration_cast<std::chrono::seconds>(
                        std::chrono::steady_clock::now() - since)
                        .count();
  if (attempts == 0) return fmt::format("no auth attempts in {} secs", secs);
  if (last) {
    if (last->type == FailureType::AuthReplied || last->type == FailureType::AuthNotReplied)
      return "proxy dest auth failed";
    return fmt::format("proxy dest {}, {} attempts in {} secs, last failure: {}{} ({})",
                       failure_what(last->type), attempts, secs, failure_log_prefix(last->type),
                       last->reason, failure_dest_code(last->type));
  }
  return fmt::format("auth failed, {} attempts in {} secs", attempts, secs);
}

namespace {

std::string started_text(const SessionLog& l, const events::ProxyStarted& e) {
  std::string msg = "Started proxying to " + l.dest();
  if (e.destuser != l.user()) msg += " as user " + log::sanitize(e.destuser);
  if (!e.master.empty()) msg += " (master " + log::sanitize(e.master) + ")";
  auto ms = e.took.count();
  msg += fmt::format(" ({}.{:03} secs", ms / 1000, ms % 1000);
  if (e.reconnects > 0) msg += fmt::format(", {} reconnects", e.reconnects);
  msg += ")";
  return msg;
}

// JSON: the event's name (by variant index) and its own typed values.
constexpr std::string_view kEventNames[] = {
    "connection_refused", "preface_refused", "prelogin_ended", "auth_refused", "proxy_config_error",
    "user_limit",         "note",           "proxy_retry",  "proxy_failed",
    "proxy_timed_out",    "client_gone",    "proxy_started", "relay_ended",
    "proxy_redirected",   "client_redirected"};
static_assert(std::size(kEventNames) == std::variant_size_v<events::Event>);

void add_failure(log::Fields& f, const ProxyFailure* p) {
  if (!p) return;
  f.push_back({"failure", std::string(failure_dest_code(p->type))});
  f.push_back({"reason", log::sanitize(p->reason)});
}

void add_event_fields(const events::Event& ev, log::Fields& f) {
  std::visit(
      [&](const auto& e) {
        using T = std::decay_t<decltype(e)>;
        using Why = events::AuthRefused::Why;
        if constexpr (std::is_same_v<T, events::ConnectionRefused>) {
          f.push_back(log::flag("per_ip", e.per_ip));
          f.push_back(log::num("limit", e.limit));
        } else if constexpr (std::is_same_v<T, events::PrefaceRefused>) {
          f.push_back(log::flag("quiet", e.quiet));
        } else if constexpr (std::is_same_v<T, events::PreloginEnded>) {
          f.push_back({"reason", std::string(e.reason)});
          f.push_back({"summary", e.summary});
          if (e.health_check) f.push_back(log::flag("health_check", true));
        } else if constexpr (std::is_same_v<T, events::AuthRefused>) {
          static constexpr std::string_view whys[] = {"authz_denied", "password_mismatch",
                                                      "unknown_user", "tempfail"};
          f.push_back({"why", std::string(whys[static_cast<int>(e.why)])});
          f.push_back({"driver", std::string(e.driver)});
          if (e.why == Why::TempFail) f.push_back({"error", log::sanitize(e.error)});
        } else if constexpr (std::is_same_v<T, events::ProxyConfigError>) {
          f.push_back({"error", log::sanitize(e.error)});
        } else if constexpr (std::is_same_v<T, events::UserLimit>) {
          f.push_back(log::num("limit", e.limit));
        } else if constexpr (std::is_same_v<T, events::ProxyRetry>) {
          add_failure(f, e.failure);
          f.push_back(log::num("attempt", e.attempt));
        } else if constexpr (std::is_same_v<T, events::ProxyFailed>) {
          add_failure(f, e.failure);
        } else if constexpr (std::is_same_v<T, events::ProxyRedirected>) {
          f.push_back({"reason", log::sanitize(e.failure->reason)});
          f.push_back({"to", std::string(e.to)});
        } else if constexpr (std::is_same_v<T, events::ClientRedirected>) {
          f.push_back({"host", log::sanitize(e.host)});
        } else if constexpr (std::is_same_v<T, events::ProxyTimedOut> ||
                             std::is_same_v<T, events::ClientGone>) {
          f.push_back({"state", std::string(e.state)});
          f.push_back(log::num("secs", e.secs));
        } else if constexpr (std::is_same_v<T, events::ProxyStarted>) {
          f.push_back({"destuser", log::sanitize(e.destuser)});
          if (!e.master.empty()) f.push_back({"master", log::sanitize(e.master)});
          f.push_back(log::num("took_ms", e.took.count()));
          f.push_back(log::num("reconnects", e.reconnects));
        }
      },
      ev);
}

}  // namespace

void SessionLog::emit(const events::Event& ev, std::string_view state) {
  Counters::local().count(counters(), ev, state);
  log::Fields f;
  const log::Fields* fp = nullptr;
  if (log::json() && !std::holds_alternative<events::RelayEnded>(ev)) {
    f = fields(kEventNames[ev.index()]);
    add_event_fields(ev, f);
    fp = &f;
  }
  std::visit(
      [&](const auto& e) {
        using T = std::decay_t<decltype(e)>;
        using Why = events::AuthRefused::Why;
        if constexpr (std::is_same_v<T, events::ConnectionRefused>) {
          client_line(fp, Level::Warning,
                      e.per_ip ? fmt::format("Disconnected: Too many connections from this IP "
                                             "(max_connections_per_ip={})",
                                             e.limit)
                               : fmt::format("Disconnected: Connection limit reached "
                                             "(max_connections={})",
                                             e.limit));
        } else if constexpr (std::is_same_v<T, events::PreloginEnded>) {
          client_line(fp, e.health_check ? Level::Debug : Level::Info,
                      fmt::format("Disconnected: {} ({})", e.reason, e.summary));
        } else if constexpr (std::is_same_v<T, events::AuthRefused>) {
          switch (e.why) {
            case Why::AuthzDenied:
              auth_line(fp, Level::Info, e.driver, "Authorization as another user denied");
              break;
            case Why::TempFail:
              auth_line(fp, Level::Error, e.driver, log::sanitize(e.error));
              break;
            case Why::Mismatch:
            case Why::UnknownUser:
              if (e.verbose)
                auth_line(fp, Level::Info, e.driver,
                          e.why == Why::Mismatch ? "Password mismatch" : "unknown user");
              break;
          }
        } else if constexpr (std::is_same_v<T, events::ProxyConfigError>) {
          if (log::enabled(Level::Error))
            log::write(Level::Error, service_,
                       "proxy(" + log::sanitize(user_) + "): " + std::string(e.error) + ": " +
                           elements(),
                       fp);
        } else if constexpr (std::is_same_v<T, events::UserLimit>) {
          client_line(fp, Level::Warning, fmt::format("Login refused: too many sessions for this "
                                                  "user (max_sessions_per_user={})",
                                                  e.limit));
        } else if constexpr (std::is_same_v<T, events::Note>) {
          client_line(fp, Level::Warning, log::sanitize(e.text));
        } else if constexpr (std::is_same_v<T, events::ProxyRedirected>) {
          proxy_line(fp, Level::Info, fmt::format("Backend referral followed to {}: {}", e.to,
                                                  log::sanitize(e.failure->reason)));
        } else if constexpr (std::is_same_v<T, events::ClientRedirected>) {
          proxy_line(fp, Level::Info, "Redirected to " + log::sanitize(e.host));
        } else if constexpr (std::is_same_v<T, events::ProxyRetry>) {
          proxy_line(fp, Level::Warning, fmt::format("{}{} - reconnecting (attempt #{})",
                                                 failure_log_prefix(e.failure->type),
                                                 e.failure->reason, e.attempt));
        } else if constexpr (std::is_same_v<T, events::ProxyFailed>) {
          if (failure_is_auth(e.failure->type)) {
            if (e.verbose) proxy_line(fp, Level::Info, "Login failed: " + e.failure->reason);
          } else {
            proxy_line(fp, Level::Error,
                       std::string(failure_log_prefix(e.failure->type)) + e.failure->reason);
          }
        } else if constexpr (std::is_same_v<T, events::ProxyTimedOut>) {
          proxy_line(fp, Level::Error, fmt::format("Logging in timed out (state={}, duration={}s)",
                                               e.state, e.secs));
        } else if constexpr (std::is_same_v<T, events::ClientGone>) {
          proxy_line(fp, Level::Info, fmt::format("Client disconnected during backend login "
                                              "(state={}, duration={}s)",
                                              e.state, e.secs));
        } else if constexpr (std::is_same_v<T, events::ProxyStarted>) {
          proxy_line(fp, Level::Info, started_text(*this, e));
        } else if constexpr (std::is_same_v<T, events::RelayEnded>) {
          render_relay_end(context(), *e.result);
        } else if constexpr (std::is_same_v<T, events::PrefaceRefused>) {
          const Level lvl = e.quiet ? Level::Debug : Level::Warning;
          if (log::enabled(lvl)) log::write(lvl, service_, e.text, fp);
        }
      },
      ev);
}

void SessionLog::emit_relay_end(const LogContext& ctx, const relay::Result& r) {
  if (ctx.counters) Counters::local().count(*ctx.counters, events::RelayEnded{&r});
  else Counters::local().count(ctx.service, events::RelayEnded{&r});
  render_relay_end(ctx, r);
}

void render_relay_end(const LogContext& ctx, const relay::Result& r) {
  std::string side;
  switch (r.side) {
    case relay::EndSide::Client:
      side = "Disconnected by client";
      break;
    case relay::EndSide::Server:
      side = "Disconnected by server";
      break;
    case relay::EndSide::Proxy:
      side = "Disconnected by proxy: ";
      side += r.reason.empty() ? std::string_view("Process shutting down") : std::string_view(r.reason);
      break;
  }
  if (!r.error.empty()) side += ": " + log::sanitize(r.error);
  log::Fields f;
  if (log::json()) {
    static constexpr std::string_view sides[] = {"client", "server", "proxy"};
    f = ctx.fields;
    f.push_back({"side", std::string(sides[static_cast<int>(r.side)])});
    if (!r.error.empty()) f.push_back({"error", log::sanitize(r.error)});
    f.push_back(log::num("idle_secs", r.idle.count()));
    f.push_back(log::num("in", static_cast<long long>(r.in)));
    f.push_back(log::num("out", static_cast<long long>(r.out)));
  }
  log::write(Level::Info, ctx.service,
             fmt::format("{}{} ({}s idle, in={}, out={}): {}", ctx.prefix, side, r.idle.count(),
                         r.in, r.out, ctx.elements),
             log::json() ? &f : nullptr);
}

}  // namespace portier::login
