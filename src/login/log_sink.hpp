#pragma once
// The text sink of session events: renders each events::Event into one
// Dovecot-shaped log line (so fail2ban's dovecot filter and log parsers keep
// working) and feeds the worker's counters from the same call. This is the
// only place in the engine that formats session log lines. With [log]
// format = "json" the same call also hands the writer the event's typed
// fields (event name, user, rip, …, and the event's own values).
//
// Owns: a session's log context (service, user, method, destination; the
// client's addresses formatted once). Uses: log (the line writer), counters.

#include <chrono>
#include <string>
#include <string_view>

#include "login/counters.hpp"
#include "login/events.hpp"
#include "login/protocol.hpp"
#include "log/log.hpp"

namespace portier::login {

/// "127.0.0.1" for IPv4 and IPv4-mapped IPv6, else the IPv6 text.
std::string addr_text(const asio::ip::address& a);
/// A session id as it may appear in a log line: a trusted upstream chooses it,
/// so everything outside [A-Za-z0-9+/=._-] becomes '?' and it is cut at 64
/// characters — it can fake no other field.
std::string log_session_id(std::string_view id);

/// The `(...)` of a pre-login `Disconnected:` line: no attempts, local auth
/// failures, or the last backend failure (Dovecot's wording).
std::string auth_summary(unsigned attempts, std::chrono::steady_clock::time_point since,
                         const ProxyFailure* last);

/// What a log line needs after the session is gone (the relay's end).
struct LogContext {
  std::string service;
  std::string prefix;    // "proxy(user,dest): "
  std::string elements;  // "user=<…>, method=…, rip=…, …"
  Counters::Live* counters = nullptr;  // the worker's slot for `service` and listener (the relay ends there too)
  log::Fields fields;    // the same as JSON fields (only with format = "json")
};

class SessionLog {
 public:
  /// `listener`: the listener's label for the counters ("127.0.0.1:143").
  SessionLog(std::string_view service, const ClientInfo& ci, std::string_view listener = {})
      : service_(service), listener_(listener), ci_(ci) {}

  void set_user(std::string user, std::string method) {
    user_ = std::move(user);
    method_ = std::move(method);
  }
  void set_dest(std::string dest) { dest_ = std::move(dest); }
  const std::string& user() const { return user_; }
  const std::string& method() const { return method_; }
  const std::string& dest() const { return dest_; }
  std::string_view service() const { return service_; }

  /// Render and count one event. `state` is the last proxy state (counters).
  void emit(const events::Event& ev, std::string_view state = {});
  /// The relay's end, after the session is gone.
  static void emit_relay_end(const LogContext& ctx, const relay::Result& r);

  LogContext context() const;
  const std::string& rip() const;
  const std::string& lip() const;
  std::string elements() const;

  /// This worker's counter slot for the service and listener, found once per
  /// session (for the counting points outside the events).
  Counters::Live& counters() const {
    if (!counters_) counters_ = &Counters::local().slot(service_, listener_);
    return *counters_;
  }

 private:
  std::string proxy_prefix() const;
  /// The session's fields of a JSON line, `event` first.
  log::Fields fields(std::string_view event) const;
  void client_line(const log::Fields* f, log::Level lvl, std::string_view msg) const;
  void proxy_line(const log::Fields* f, log::Level lvl, std::string_view msg) const;
  void auth_line(const log::Fields* f, log::Level lvl, std::string_view driver,
                 std::string_view msg) const;
  std::string_view service_;
  std::string_view listener_;
  const ClientInfo& ci_;
  std::string user_;
  std::string method_;
  std::string dest_;
  mutable asio::ip::address rip_for_, lip_for_;
  mutable std::string rip_text_, lip_text_;
  mutable Counters::Live* counters_ = nullptr;
};

}  // namespace portier::login
