#include "app/service_notify.hpp"

#include <systemd/sd-daemon.h>
#include <time.h>

#include <algorithm>
#include <cinttypes>
#include <cstdint>

namespace portier::app {

ServiceNotifier::ServiceNotifier() {
  uint64_t usec = 0;
  // > 0 only when WATCHDOG_USEC is set and WATCHDOG_PID (if set) is us.
  if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) watchdog_ = std::chrono::microseconds(usec);
}

void ServiceNotifier::status(size_t connections) {
  last_status_ = Clock::now();
  last_count_ = connections;
  sd_notifyf(0, "STATUS=%zu connections%s", connections, note_.c_str());
}

void ServiceNotifier::ready(size_t connections) {
  sd_notify(0, "READY=1");
  status(connections);
}

void ServiceNotifier::reloading() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  uint64_t usec = static_cast<uint64_t>(ts.tv_sec) * 1000000u + static_cast<uint64_t>(ts.tv_nsec) / 1000u;
  sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%" PRIu64 "\nSTATUS=Reloading the configuration", usec);
}

void ServiceNotifier::reloaded(size_t connections, bool ok) {
  note_ = ok ? "" : "; last reload failed, old configuration kept (see the log)";
  sd_notify(0, "READY=1");
  status(connections);
}

void ServiceNotifier::stopping() { sd_notify(0, "STOPPING=1\nSTATUS=Shutting down"); }

std::chrono::milliseconds ServiceNotifier::tick_interval() const {
  std::chrono::milliseconds t = kStatusInterval;
  if (watchdog_enabled())
    t = std::min(t, std::max(std::chrono::milliseconds(1),
                             std::chrono::duration_cast<std::chrono::milliseconds>(watchdog_ / 4)));
  return t;
}

void ServiceNotifier::tick(size_t connections, bool alive) {
  if (watchdog_enabled() && alive) sd_notify(0, "WATCHDOG=1");
  if (connections != last_count_ || Clock::now() - last_status_ >= kStatusInterval)
    status(connections);
}

}  // namespace portier::app
