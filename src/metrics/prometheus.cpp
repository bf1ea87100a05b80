#include "metrics/prometheus.hpp"

#include <array>
#include <map>
#include <string>
#include <utility>

#include "login/counters.hpp"
#include "passdb/cache.hpp"

#ifndef PORTIER_VERSION
#define PORTIER_VERSION "unknown"
#endif
#ifndef PORTIER_REVISION
#define PORTIER_REVISION "unknown"
#endif

namespace portier::metrics {

using login::HistogramData;
using login::ServiceCounters;

std::string_view protocol_of(std::string_view service) {
  constexpr std::string_view suffix = "-login";
  if (service.size() > suffix.size() && service.substr(service.size() - suffix.size()) == suffix)
    return service.substr(0, service.size() - suffix.size());
  return service;
}

namespace {

using ByListener = std::map<std::pair<std::string, std::string>, ServiceCounters>;
using ByProtocol = std::map<std::string, ServiceCounters, std::less<>>;

double u(uint64_t v) { return static_cast<double>(v); }
/// A gauge from two monotonic counts (never below zero while a scrape races a worker).
double diff(uint64_t a, uint64_t b) { return a > b ? static_cast<double>(a - b) : 0; }

void histogram(Writer& w, std::string_view name, Labels labels,
               const HistogramData& h) {
  w.histogram(name, labels, login::kLatencyBounds, h.buckets, static_cast<double>(h.sum_us) / 1e6);
}

/// One sample per (protocol, listener) slot.
template <typename F>
void per_listener(Writer& w, const ByListener& by, std::string_view name, F value) {
  for (const auto& [key, s] : by) {
    w.sample(name, {{"protocol", protocol_of(key.first)}, {"listener", key.second}}, value(s));
  }
}

void connections(Writer& w, const ByListener& by) {
  w.family("portier_connections_total", "counter", "Client connections accepted.");
  per_listener(w, by, "portier_connections_total", [](const auto& s) { return u(s.connections); });
  w.family("portier_connections_current", "gauge",
           "Client connections open now (logging in or relaying).");
  per_listener(w, by, "portier_connections_current",
               [](const auto& s) { return diff(s.connections, s.connections_closed); });
  w.family("portier_preface_refusals_total", "counter",
           "Connections refused by the listener's PROXY protocol preface (missing, malformed, late "
           "or untrusted header; health checks not counted).");
  per_listener(w, by, "portier_preface_refusals_total",
               [](const auto& s) { return u(s.preface_refused); });
}

void sessions(Writer& w, const ByListener& by) {
  w.family("portier_proxy_sessions_established_total", "counter",
           "Proxied sessions started (logged in at the backend, relaying).");
  per_listener(w, by, "portier_proxy_sessions_established_total",
               [](const auto& s) { return u(s.logins); });
  w.family("portier_proxy_sessions_active", "gauge", "Proxied sessions relaying now.");
  per_listener(w, by, "portier_proxy_sessions_active",
               [](const auto& s) { return diff(s.logins, s.relays_ended); });
  w.family("portier_proxy_sessions_finished_total", "counter",
           "Proxied sessions ended, by the side that ended them (client, server, proxy).");
  for (const auto& [key, s] : by)
    for (size_t i = 0; i < login::kEndSideNames.size(); ++i) {
      w.sample("portier_proxy_sessions_finished_total",
               {{"protocol", protocol_of(key.first)},
                {"listener", key.second},
                {"disconnect_side", login::kEndSideNames[i]}},
               u(s.relays_ended_by[i]));
    }
  w.family("portier_proxy_bytes_total", "counter",
           "Bytes relayed after login, counted when a session ends: in = from the client to the "
           "backend, out = from the backend to the client.");
  for (const auto& [key, s] : by)
    for (auto [dir, v] : {std::pair<std::string_view, uint64_t>{"in", s.bytes_in}, {"out", s.bytes_out}}) {
      w.sample("portier_proxy_bytes_total",
               {{"protocol", protocol_of(key.first)}, {"listener", key.second}, {"direction", dir}},
               u(v));
    }
}

void logins(Writer& w, const ByProtocol& by) {
  w.family("portier_logins_total", "counter",
           "Login attempts by result (exactly one result per attempt).");
  for (const auto& [proto, s] : by)
    for (size_t i = 0; i < login::kLoginResultNames.size(); ++i)
      w.sample("portier_logins_total", {{"protocol", proto}, {"result", login::kLoginResultNames[i]}},
               u(s.login_results[i]));
  w.family("portier_backend_login_failures_total", "counter",
           "Backend logins that failed for good, by failure type and the proxy state at the "
           "failure (e.g. state=\"id+login/banner\").");
  for (const auto& [proto, s] : by)
    for (const auto& [k, n] : s.proxy_failures)
      w.sample("portier_backend_login_failures_total",
               {{"protocol", proto}, {"type", k.first}, {"state", k.second}}, u(n));
  w.family("portier_backend_login_retries_total", "counter",
           "Backend login attempts that failed and were retried on a new connection.");
  for (const auto& [proto, s] : by)
    w.sample("portier_backend_login_retries_total", {{"protocol", proto}}, u(s.proxy_retries));
  w.family("portier_login_duration_seconds", "histogram",
           "Successful logins: from the client's credentials to the backend's acceptance "
           "(passdb and backend login).");
  for (const auto& [proto, s] : by) {
    histogram(w, "portier_login_duration_seconds", {{"protocol", proto}}, s.login_duration);
  }
  w.family("portier_proxy_login_duration_seconds", "histogram",
           "Successful backend logins: from the backend connect to its acceptance.");
  for (const auto& [proto, s] : by) {
    histogram(w, "portier_proxy_login_duration_seconds", {{"protocol", proto}}, s.backend_login_duration);
  }
}

void passdbs(Writer& w) {
  const auto by = login::Counters::passdb_sum();
  w.family("portier_passdb_requests_total", "counter",
           "passdb lookups by passdb and result (ok, password_mismatch, user_unknown, "
           "internal_failure).");
  for (const auto& [name, p] : by)
    for (size_t i = 0; i < login::kPassdbResultNames.size(); ++i)
      w.sample("portier_passdb_requests_total",
               {{"passdb", name}, {"result", login::kPassdbResultNames[i]}}, u(p.results[i]));
  w.family("portier_passdb_request_duration_seconds", "histogram",
           "passdb lookup latency (the whole chain, by the passdb that answered).");
  for (const auto& [name, p] : by) {
    histogram(w, "portier_passdb_request_duration_seconds", {{"passdb", name}}, p.duration);
  }
}

void auth_cache(Writer& w) {
  const auto c = passdb::auth_cache_stats();
  w.family("portier_auth_cache_hits_total", "counter",
           "Logins answered from a fresh auth cache entry ([auth.cache]).");
  w.sample("portier_auth_cache_hits_total", {}, u(c.hits));
  w.family("portier_auth_cache_misses_total", "counter",
           "Logins that asked the passdb (no entry, expired, or re-asked).");
  w.sample("portier_auth_cache_misses_total", {}, u(c.misses));
  w.family("portier_auth_cache_entries", "gauge", "Auth cache entries (positive and negative).");
  w.sample("portier_auth_cache_entries", {}, u(c.entries));
  w.family("portier_auth_cache_bytes", "gauge", "Memory held by the auth cache's entries.");
  w.sample("portier_auth_cache_bytes", {}, u(c.bytes));
}

void tls_and_limits(Writer& w, const ByProtocol& by) {
  w.family("portier_tls_handshakes_total", "counter",
           "TLS handshakes by leg (client: implicit TLS or STARTTLS; backend) and result.");
  for (const auto& [proto, s] : by)
    for (size_t leg = 0; leg < login::kTlsLegNames.size(); ++leg)
      for (size_t r = 0; r < 2; ++r)
        w.sample("portier_tls_handshakes_total",
                 {{"protocol", proto},
                  {"leg", login::kTlsLegNames[leg]},
                  {"result", r == 0 ? "ok" : "failed"}},
                 u(s.tls[leg][r]));
  w.family("portier_limit_refusals_total", "counter",
           "Connections and logins refused by a limit (max_connections, max_connections_per_ip, "
           "max_sessions_per_user).");
  for (const auto& [proto, s] : by)
    for (size_t i = 0; i < login::kLimitNames.size(); ++i)
      w.sample("portier_limit_refusals_total", {{"protocol", proto}, {"limit", login::kLimitNames[i]}},
               u(s.limit_refusals[i]));
  w.family("portier_auth_failure_delays_total", "counter",
           "Failed logins answered after a delay (auth.failure_delay).");
  for (const auto& [proto, s] : by)
    w.sample("portier_auth_failure_delays_total", {{"protocol", proto}}, u(s.failure_delays));
  w.family("portier_auth_failure_delay_seconds_total", "counter",
           "Total delay imposed on failed logins.");
  for (const auto& [proto, s] : by)
    w.sample("portier_auth_failure_delay_seconds_total", {{"protocol", proto}},
             u(s.failure_delay_ms) / 1e3);
  w.family("portier_auth_penalties_total", "counter",
           "Failed-login delays lengthened by the per-IP penalty (earlier failures from the same "
           "client, up to login.auth_penalty_max).");
  for (const auto& [proto, s] : by)
    w.sample("portier_auth_penalties_total", {{"protocol", proto}}, u(s.penalized));
}

void lmtp(Writer& w) {
  const auto l = login::Counters::lmtp_sum();
  w.family("portier_lmtp_sessions_total", "counter", "LMTP client connections.");
  w.sample("portier_lmtp_sessions_total", {}, u(l.sessions));
  w.family("portier_lmtp_sessions_current", "gauge", "LMTP client connections open now.");
  w.sample("portier_lmtp_sessions_current", {}, diff(l.sessions, l.sessions_ended));
  w.family("portier_lmtp_recipients_total", "counter",
           "LMTP recipients by final result (delivered, tempfail, permfail) and what decided it "
           "(backend: the backend's reply; else portier's refusal at RCPT or a failed backend connection).");
  for (size_t res = 0; res < login::kDeliveryResultNames.size(); ++res)
    for (size_t why = 0; why < login::kDeliveryReasonNames.size(); ++why) {
      // The backend's series always; portier's own reasons once they happened.
      if (why != static_cast<size_t>(login::DeliveryReason::Backend) && l.recipients[res][why] == 0) continue;
      w.sample("portier_lmtp_recipients_total",
               {{"result", login::kDeliveryResultNames[res]}, {"reason", login::kDeliveryReasonNames[why]}},
               u(l.recipients[res][why]));
    }
  w.family("portier_lmtp_messages_total", "counter", "LMTP messages received whole (DATA answered).");
  w.sample("portier_lmtp_messages_total", {}, u(l.messages));
  w.family("portier_lmtp_bytes_total", "counter",
           "Bytes of the LMTP messages received, as sent by the client (dot-stuffed, final dot included).");
  w.sample("portier_lmtp_bytes_total", {}, u(l.bytes));
  w.family("portier_lmtp_backend_connections_total", "counter",
           "LMTP backend connections opened (ok) or failed (connect, TLS, greeting, LHLO).");
  w.sample("portier_lmtp_backend_connections_total", {{"result", "ok"}}, u(l.backend_connections[0]));
  w.sample("portier_lmtp_backend_connections_total", {{"result", "failed"}}, u(l.backend_connections[1]));
  w.family("portier_lmtp_data_duration_seconds", "histogram",
           "LMTP messages: from the DATA command to the replies for every recipient.");
  histogram(w, "portier_lmtp_data_duration_seconds", {}, l.data_duration);
}

void doveadm(Writer& w) {
  const auto d = login::Counters::doveadm_sum();
  w.family("portier_doveadm_commands_total", "counter",
           "doveadm proxy commands by result (ok: the backend's reply relayed, whatever its exit code).");
  for (size_t i = 0; i < login::kDoveadmResultNames.size(); ++i)
    w.sample("portier_doveadm_commands_total", {{"result", login::kDoveadmResultNames[i]}}, u(d[i]));
}

void process(Writer& w) {
  const auto r = login::Counters::reloads();
  w.family("portier_config_reloads_total", "counter", "Configuration reloads (SIGHUP) by result.");
  w.sample("portier_config_reloads_total", {{"result", "ok"}}, u(r.ok));
  w.sample("portier_config_reloads_total", {{"result", "failed"}}, u(r.failed));
  w.family("portier_config_last_reload_success_timestamp_seconds", "gauge",
           "Unix time of the last successful reload (0: none since start).");
  w.sample("portier_config_last_reload_success_timestamp_seconds", {}, static_cast<double>(r.last_ok_unix));
  w.family("portier_build_info", "gauge", "portier's version and source revision (always 1).");
  w.sample("portier_build_info", {{"version", PORTIER_VERSION}, {"revision", PORTIER_REVISION}}, 1);
  const auto p = process_facts();
  w.family("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.");
  w.sample("process_cpu_seconds_total", {}, p.cpu_seconds);
  w.family("process_open_fds", "gauge", "Number of open file descriptors.");
  w.sample("process_open_fds", {}, p.open_fds);
  w.family("process_max_fds", "gauge", "Maximum number of open file descriptors.");
  w.sample("process_max_fds", {}, p.max_fds);
  w.family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
  w.sample("process_resident_memory_bytes", {}, p.resident_memory_bytes);
  w.family("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
  w.sample("process_virtual_memory_bytes", {}, p.virtual_memory_bytes);
  w.family("process_start_time_seconds", "gauge",
           "Start time of the process since unix epoch in seconds.");
  w.sample("process_start_time_seconds", {}, p.start_time_seconds);
}

}  // namespace

std::string render() {
  const ByListener by_listener = login::Counters::sum_by_listener();
  ByProtocol by_protocol;
  for (const auto& [key, s] : by_listener) {
    const auto proto = protocol_of(key.first);
    auto it = by_protocol.find(proto);
    if (it == by_protocol.end()) it = by_protocol.emplace(std::string(proto), ServiceCounters{}).first;
    it->second.add(s);
  }
  Writer w;
  connections(w, by_listener);
  sessions(w, by_listener);
  logins(w, by_protocol);
  passdbs(w);
  auth_cache(w);
  tls_and_limits(w, by_protocol);
  lmtp(w);
  doveadm(w);
  process(w);
  return w.take();
}

}  // namespace portier::metrics
