#pragma once
// Service manager notifications: systemd's notify protocol through libsystemd
// (sd_notify), for `Type=notify` units. Without NOTIFY_SOCKET in the
// environment every call is a cheap no-op, so portier behaves the same in a
// terminal, under a test harness or under another supervisor.
//   READY=1                      listeners bound and accepting
//   RELOADING=1 + MONOTONIC_USEC  SIGHUP received; READY=1 again when done
//   STOPPING=1                   SIGTERM/SIGINT received
//   STATUS=<n> connections …     when the count changed (checked at every
//                                tick), else every kStatusInterval
//   WATCHDOG=1                   when WATCHDOG_USEC is set for this process,
//                                every quarter of it while all workers' event
//                                loops turn (Server::heartbeat)
//
// Owns: the notify protocol and its timing. Uses: libsystemd.

#include <chrono>
#include <cstddef>
#include <string>

namespace portier::app {

class ServiceNotifier {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::seconds kStatusInterval{5};

  ServiceNotifier();

  void ready(size_t connections);
  void reloading();
  /// After a reload: READY=1 and a status line saying whether it worked.
  void reloaded(size_t connections, bool ok);
  void stopping();

  /// How long the main thread may wait for a signal before calling tick().
  std::chrono::milliseconds tick_interval() const;
  /// STATUS when the count changed or every kStatusInterval; the watchdog
  /// ping when enabled and `alive`.
  void tick(size_t connections, bool alive);
  bool watchdog_enabled() const { return watchdog_.count() > 0; }

 private:
  void status(size_t connections);

  std::chrono::microseconds watchdog_{0};
  Clock::time_point last_status_{};
  size_t last_count_ = 0;
  std::string note_;  // appended to STATUS (e.g. a failed reload)
};

}  // namespace portier::app
