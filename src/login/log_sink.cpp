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

void SessionLog::client_line(Level lvl, std::string_view msg) const {
  if (!log::enabled(lvl)) return;
  log::write(lvl, service_, std::string(msg) + ": " + elements());
}

void SessionLog::proxy_line(Level lvl, std::string_view msg) const {
  if (!log::enabled(lvl)) return;
  log::write(lvl, service_, proxy_prefix() + std::string(msg) + ": " + elements());
}

void SessionLog::auth_line(Level lvl, std::string_view driver, std::string_view msg) const {
  log::logf(lvl, "auth", "{}({},{},<{}>): {}", driver, log::sanitize(user_), rip(),
            log_session_id(ci_.session_id), msg);
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

}  // namespace

void SessionLog::emit(const events::Event& ev, std::string_view state) {
  Counters::local().count(counters(), ev, state);
  std::visit(
      [&](const auto& e) {
        using T = std::decay_t<decltype(e)>;
        using Why = events::AuthRefused::Why;
        if constexpr (std::is_same_v<T, events::ConnectionRefused>) {
          client_line(Level::Warning,
                      e.per_ip ? fmt::format("Disconnected: Too many connections from this IP "
                                             "(max_connections_per_ip={})",
                                             e.limit)
                               : fmt::format("Disconnected: Connection limit reached "
                                             "(max_connections={})",
                                             e.limit));
        } else if constexpr (std::is_same_v<T, events::PreloginEnded>) {
          client_line(Level::Info, fmt::format("Disconnected: {} ({})", e.reason, e.summary));
        } else if constexpr (std::is_same_v<T, events::AuthRefused>) {
          switch (e.why) {
            case Why::AuthzDenied:
              auth_line(Level::Info, e.driver, "Authorization as another user denied");
              break;
            case Why::TempFail:
              auth_line(Level::Error, e.driver, log::sanitize(e.error));
              break;
            case Why::Mismatch:
            case Why::UnknownUser:
              if (e.verbose)
                auth_line(Level::Info, e.driver,
                          e.why == Why::Mismatch ? "Password mismatch" : "unknown user");
              break;
          }
        } else if constexpr (std::is_same_v<T, events::ProxyConfigError>) {
          if (log::enabled(Level::Error))
            log::write(Level::Error, service_,
                       "proxy(" + log::sanitize(user_) + "): " + std::string(e.error) + ": " +
                           elements());
        } else if constexpr (std::is_same_v<T, events::UserLimit>) {
          client_line(Level::Warning, fmt::format("Login refused: too many sessions for this "
                                                  "user (max_sessions_per_user={})",
                                                  e.limit));
        } else if constexpr (std::is_same_v<T, events::Note>) {
          client_line(Level::Warning, log::sanitize(e.text));
        } else if constexpr (std::is_same_v<T, events::ProxyRetry>) {
          proxy_line(Level::Warning, fmt::format("{}{} - reconnecting (attempt #{})",
                                                 failure_log_prefix(e.failure->type),
                                                 e.failure->reason, e.attempt));
        } else if constexpr (std::is_same_v<T, events::ProxyFailed>) {
          if (failure_is_auth(e.failure->type)) {
            if (e.verbose) proxy_line(Level::Info, "Login failed: " + e.failure->reason);
          } else {
            proxy_line(Level::Error,
                       std::string(failure_log_prefix(e.failure->type)) + e.failure->reason);
          }
        } else if constexpr (std::is_same_v<T, events::ProxyTimedOut>) {
          proxy_line(Level::Error, fmt::format("Logging in timed out (state={}, duration={}s)",
                                               e.state, e.secs));
        } else if constexpr (std::is_same_v<T, events::ClientGone>) {
          proxy_line(Level::Info, fmt::format("Client disconnected during backend login "
                                              "(state={}, duration={}s)",
                                              e.state, e.secs));
        } else if constexpr (std::is_same_v<T, events::ProxyStarted>) {
          proxy_line(Level::Info, started_text(*this, e));
        } else if constexpr (std::is_same_v<T, events::RelayEnded>) {
          render_relay_end(context(), *e.result);
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
      side = "Disconnected by proxy: Process shutting down";
      break;
  }
  if (!r.error.empty()) side += ": " + log::sanitize(r.error);
  log::write(Level::Info, ctx.service,
             fmt::format("{}{} ({}s idle, in={}, out={}): {}", ctx.prefix, side, r.idle.count(),
                         r.in, r.out, ctx.elements));
}

}  // namespace portier::login
