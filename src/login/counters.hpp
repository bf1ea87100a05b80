#pragma once
// Per-worker counters fed by the session events (login/events.hpp) — the
// same call that renders the log line — and by a few counting points of the
// session (connections opened/closed, login results, TLS handshakes, failure
// delays, latencies). The Prometheus renderer (metrics/prometheus) reads
// sum_by_listener() and passdb_sum(); docs/METRICS.md lists what each feeds.
//
// Owns: the counters of its worker, fixed-bucket latency histograms, the
// process-wide reload counts. Threading: each worker updates its own instance
// — relaxed atomic load+store on the hot path (one writer), no lock (a mutex
// guards only the rare paths: a new service/listener or passdb slot, a failure
// by type and state); sum() may run on any thread and never stops a worker.

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "login/events.hpp"

namespace portier::login {

/// One writer: a relaxed load + store is an increment without a locked instruction.
inline void bump(std::atomic<uint64_t>& n, uint64_t v = 1) {
  n.store(n.load(std::memory_order_relaxed) + v, std::memory_order_relaxed);
}

/// Upper bounds (seconds) of the latency histograms' buckets; +Inf is implied.
inline constexpr std::array<double, 14> kLatencyBounds = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

/// A histogram's values as read at a scrape: per-bucket (not cumulative)
/// counts, the last one past every bound (+Inf).
struct HistogramData {
  std::array<uint64_t, kLatencyBounds.size() + 1> buckets{};
  uint64_t sum_us = 0;  // microseconds
  uint64_t count = 0;
  void add(const HistogramData& o);
};

/// Fixed buckets, one writer (the worker): observe() is a short scan and
/// three relaxed load+stores.
struct Histogram {
  std::array<std::atomic<uint64_t>, kLatencyBounds.size() + 1> buckets{};
  std::atomic<uint64_t> sum_us{0}, count{0};
  void observe(std::chrono::microseconds d);
  void snapshot_into(HistogramData& o) const;
};

/// The outcome of one login attempt (exactly one per attempt).
enum class LoginResult {
  Success,           // the backend accepted: relaying starts
  PasswordMismatch,  // passdb: wrong password
  UserUnknown,       // passdb: no such user
  AuthzDenied,       // authzid != authcid
  PassdbTempfail,    // passdb: temporary failure
  Disabled,          // passdb: nologin
  ConfigError,       // passdb reply unusable (no proxy field, bad host, ...)
  UserLimit,         // max_sessions_per_user
  BackendFailed,     // the backend login failed for good (see proxy_failures)
  Aborted,           // client gone, login timeout or shutdown mid-login
  kCount,
};
inline constexpr std::array<std::string_view, static_cast<size_t>(LoginResult::kCount)>
    kLoginResultNames = {"success",         "password_mismatch", "user_unknown", "authz_denied",
                         "passdb_tempfail", "disabled",          "config_error", "user_limit",
                         "backend_failed",  "aborted"};

/// Which limit refused a connection or a login.
enum class Limit { MaxConnections, MaxConnectionsPerIp, MaxSessionsPerUser, kCount };
inline constexpr std::array<std::string_view, static_cast<size_t>(Limit::kCount)> kLimitNames = {
    "max_connections", "max_connections_per_ip", "max_sessions_per_user"};

/// TLS handshake legs: the client's (implicit or STARTTLS) and the backend's.
enum class TlsLeg { Client, Backend, kCount };
inline constexpr std::array<std::string_view, static_cast<size_t>(TlsLeg::kCount)> kTlsLegNames = {
    "client", "backend"};

/// Relay end sides, in relay::EndSide order.
inline constexpr std::array<std::string_view, 3> kEndSideNames = {"client", "server", "proxy"};

struct ServiceCounters {
  uint64_t connections = 0;         // accepted client connections
  uint64_t connections_closed = 0;  // of those, closed (current = connections - closed)
  uint64_t connections_refused = 0;
  uint64_t preface_refused = 0;  // PROXY header missing, bad, late or untrusted
  uint64_t prelogin_ended = 0;       // sessions that ended before relaying
  uint64_t auth_failed = 0;          // passdb mismatch / unknown user / authz denied
  uint64_t auth_tempfail = 0;
  uint64_t logins = 0;               // relaying started
  uint64_t proxy_retries = 0;
  uint64_t relays_ended = 0;
  uint64_t bytes_in = 0;             // client -> backend, relayed
  uint64_t bytes_out = 0;            // backend -> client, relayed
  std::array<uint64_t, kEndSideNames.size()> relays_ended_by{};  // by relay::EndSide
  std::array<uint64_t, kLoginResultNames.size()> login_results{};
  std::array<uint64_t, kLimitNames.size()> limit_refusals{};
  std::array<std::array<uint64_t, 2>, kTlsLegNames.size()> tls{};  // [leg][0 ok, 1 failed]
  uint64_t failure_delays = 0;     // failed logins answered after a delay
  uint64_t failure_delay_ms = 0;   // summed delay
  uint64_t penalized = 0;          // delays above auth.failure_delay (earlier failures)
  HistogramData login_duration;    // credentials in -> backend accepted
  HistogramData backend_login_duration;  // backend connect -> backend accepted
  /// Final backend login failures by (failure type name, proxy state).
  std::map<std::pair<std::string, std::string>, uint64_t> proxy_failures;

  void add(const ServiceCounters& o);
};

/// One passdb's requests (Dovecot's auth_passdb_request_finished results).
inline constexpr std::array<std::string_view, 4> kPassdbResultNames = {
    "ok", "password_mismatch", "user_unknown", "internal_failure"};
struct PassdbCounters {
  std::array<uint64_t, kPassdbResultNames.size()> results{};
  HistogramData duration;
  void add(const PassdbCounters& o);
};

/// LMTP recipients: the final outcome (from the reply code the client got:
/// 2xx, 4xx, 5xx) and what decided it. Per recipient: at RCPT when refused
/// there, else after the backend's reply to the final dot.
enum class DeliveryResult { Delivered, TempFail, PermFail, kCount };
inline constexpr std::array<std::string_view, static_cast<size_t>(DeliveryResult::kCount)>
    kDeliveryResultNames = {"delivered", "tempfail", "permfail"};
enum class DeliveryReason {
  Backend,            // the backend's own reply (accepted or refused)
  BackendFailure,     // the backend connection failed (connect, lost, timed out, bad reply)
  UnknownUser,        // passdb: no such user
  PassdbTempfail,     // passdb: temporary failure
  ConfigError,        // passdb reply unusable (bad host, port, protocol)
  Disabled,           // passdb: nologin
  NotProxied,         // no proxy field, lmtp.unproxied = "refuse"
  Loop,               // TTL used up or the destination is portier itself
  TooManyRecipients,  // lmtp.max_recipients
  kCount,
};
inline constexpr std::array<std::string_view, static_cast<size_t>(DeliveryReason::kCount)>
    kDeliveryReasonNames = {"backend", "backend_failure", "unknown_user", "passdb_tempfail", "config_error",
                            "disabled", "not_proxied", "loop", "too_many_recipients"};

/// The LMTP proxy's counters (lmtp/events.hpp feeds them).
struct LmtpCounters {
  uint64_t sessions = 0;        // client connections
  uint64_t sessions_ended = 0;  // of those, ended (current = sessions - ended)
  uint64_t messages = 0;        // DATA completed (the final dot received and answered)
  uint64_t bytes = 0;           // those messages' bytes as received (dot-stuffed, with the final dot)
  std::array<std::array<uint64_t, kDeliveryReasonNames.size()>, kDeliveryResultNames.size()> recipients{};
  std::array<uint64_t, 2> backend_connections{};  // [0 ok, 1 failed]
  HistogramData data_duration;                    // DATA command -> replies to the client
  void add(const LmtpCounters& o);
};

/// doveadm proxy commands by result.
enum class DoveadmResult { Ok, Refused, UserUnknown, TempFail, Aborted, kCount };
inline constexpr std::array<std::string_view, static_cast<size_t>(DoveadmResult::kCount)>
    kDoveadmResultNames = {"ok", "refused", "user_unknown", "tempfail", "aborted"};

/// Process-wide reload counts (the main thread reloads).
struct ReloadCounters {
  uint64_t ok = 0, failed = 0;
  int64_t last_ok_unix = 0;  // 0: never reloaded
};

class Counters {
 public:
  Counters();
  ~Counters();
  /// One (service, listener)'s live counters (single writer: the worker).
  struct Live;
  struct PassdbLive;

  /// This thread's (worker's) counters; registered for sum() on first use.
  static Counters& local();
  /// All workers' counters added up, per service ("imap-login", …).
  static std::map<std::string, ServiceCounters> sum();
  /// The same per (service, listener) ("127.0.0.1:143"; empty when unknown).
  static std::map<std::pair<std::string, std::string>, ServiceCounters> sum_by_listener();
  /// All workers' passdb counters, by passdb log name ("passwd-file", …).
  static std::map<std::string, PassdbCounters> passdb_sum();
  /// All threads' LMTP counters added up.
  static LmtpCounters lmtp_sum();
  /// All threads' doveadm command counts, by kDoveadmResultNames.
  static std::array<uint64_t, kDoveadmResultNames.size()> doveadm_sum();

  /// Count one event of `service`; `state` is the proxy state for failures.
  void count(std::string_view service, const events::Event& ev, std::string_view state = {});
  /// The same, for a service slot found once (SessionLog keeps it).
  void count(Live& live, const events::Event& ev, std::string_view state = {});
  /// The slot of (`service`, `listener`) (created on first use; stable for the process).
  Live& slot(std::string_view service, std::string_view listener = {});
  /// The slot of a passdb (by its log name; created on first use).
  PassdbLive& passdb(std::string_view name);

  // Counting points outside the events (all on the worker, through a slot).
  static void connection_opened(Live& l);
  static void connection_closed(Live& l);
  static void login_result(Live& l, LoginResult r);
  static void tls_handshake(Live& l, TlsLeg leg, bool ok);
  /// A failed login's delay; `penalized`: longer than the base delay.
  static void failure_delay(Live& l, std::chrono::milliseconds d, bool penalized);
  static void login_duration(Live& l, std::chrono::microseconds d);
  static void backend_login_duration(Live& l, std::chrono::microseconds d);
  /// One passdb answer: `result` indexes kPassdbResultNames.
  static void passdb_request(PassdbLive& p, size_t result, std::chrono::microseconds d);

  // The sibling services' counting points (this thread's counters; no slot,
  // no lock: one writer, relaxed load+store).
  void lmtp_session(bool opened);
  void lmtp_recipient(DeliveryResult r, DeliveryReason why);
  void lmtp_backend_connection(bool ok);
  void lmtp_message(uint64_t bytes, std::chrono::microseconds took);
  void doveadm_command(DoveadmResult r);

  /// A configuration reload (SIGHUP) succeeded or failed.
  static void reloaded(bool ok);
  static ReloadCounters reloads();

 private:
  struct SiblingLive;
  std::unique_ptr<SiblingLive> sibling_;  // created with the Counters, read by the scrape
  mutable std::mutex mu_;
  std::map<std::pair<std::string, std::string>, std::unique_ptr<Live>> by_slot_;
  std::map<std::string, std::unique_ptr<PassdbLive>, std::less<>> by_passdb_;
  // The last slot found (owner thread only): most sessions of a worker hit
  // the same one, so the map, the key strings and the mutex are skipped.
  std::pair<std::string, std::string> last_slot_key_;
  Live* last_slot_ = nullptr;
  std::string last_passdb_key_;
  PassdbLive* last_passdb_ = nullptr;
};

}  // namespace portier::login
