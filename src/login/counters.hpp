#pragma once
// Per-worker counters fed by the session events (login/events.hpp) — the
// same call that renders the log line. A metrics endpoint reads sum().
//
// Owns: the counters of its worker. Threading: each worker updates its own
// instance — relaxed atomic adds on the hot path, no lock (a mutex guards
// only the rare paths: a new service, a failure by type and state); sum()
// may run on any thread and never stops a worker.

#include <cstdint>
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "login/events.hpp"

namespace portier::login {

struct ServiceCounters {
  uint64_t connections_refused = 0;
  uint64_t prelogin_ended = 0;       // sessions that ended before relaying
  uint64_t auth_failed = 0;          // passdb mismatch / unknown user / authz denied
  uint64_t auth_tempfail = 0;
  uint64_t logins = 0;               // relaying started
  uint64_t proxy_retries = 0;
  uint64_t relays_ended = 0;
  uint64_t bytes_in = 0;             // client -> backend, relayed
  uint64_t bytes_out = 0;            // backend -> client, relayed
  /// Final backend login failures by (failure type name, proxy state).
  std::map<std::pair<std::string, std::string>, uint64_t> proxy_failures;

  void add(const ServiceCounters& o);
};

class Counters {
 public:
  /// One service's live counters (single writer: the worker).
  struct Live;

  /// This thread's (worker's) counters; registered for sum() on first use.
  static Counters& local();
  /// All workers' counters added up, per service ("imap-login", …).
  static std::map<std::string, ServiceCounters> sum();

  /// Count one event of `service`; `state` is the proxy state for failures.
  void count(std::string_view service, const events::Event& ev, std::string_view state = {});
  /// The same, for a service slot found once (SessionLog keeps it).
  void count(Live& live, const events::Event& ev, std::string_view state = {});
  /// The slot of `service` (created on first use; stable for the process).
  Live& slot(std::string_view service);

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::unique_ptr<Live>, std::less<>> by_service_;
};

}  // namespace portier::login
