#pragma once
// The /metrics content: every counter of the process in the Prometheus text
// exposition format 0.0.4 (metrics/exposition.hpp). Names follow
// ../shared/spec/ops-reference.md §6.5 and docs/METRICS.md lists them all.
// The admin HTTP listener serves GET /metrics by calling render() (with
// Content-Type kContentType).
//
// A scrape reads the workers' counters (login::Counters::sum_by_listener,
// passdb_sum: relaxed loads, no worker is stopped) and /proc/self for the
// process facts; it may run on any thread.
//
// Owns: the metric names, types, help texts and labels. Uses: login counters,
// passdb::auth_cache_stats(), exposition writer, /proc.

#include <string>

#include "metrics/exposition.hpp"

namespace portier::metrics {

/// The whole exposition, now.
std::string render();

/// What /proc says about this process (the Prometheus client libraries'
/// process_* metrics).
struct ProcessFacts {
  double start_time_seconds = 0;  // Unix time the process started
  double cpu_seconds = 0;         // user + system
  double open_fds = 0;
  double max_fds = 0;
  double resident_memory_bytes = 0;
  double virtual_memory_bytes = 0;
};
ProcessFacts process_facts();

/// "imap-login" → "imap": the protocol label of a login service.
std::string_view protocol_of(std::string_view service);

}  // namespace portier::metrics
