#pragma once
// The pre-login timer of a session: one deadline (login.client_timeout) whose
// expiry runs a callback, and the bounded write of a goodbye. A per-worker
// net::Deadline: a callback never runs after disarm(), re-arm or destruction,
// and re-arming for a later time costs no syscall.
//
// Owns: one net::Deadline. Uses: net.

#include <chrono>
#include <functional>

#include "net/deadline.hpp"

namespace portier::login {

class LoginTimer {
 public:
  explicit LoginTimer(const asio::any_io_executor& ex) : deadline_(ex) {}

  /// Run `on_expiry` after `d` unless disarmed or re-armed first.
  void arm(std::chrono::milliseconds d, std::function<void()> on_expiry) {
    deadline_.arm_after(d, std::move(on_expiry));
  }
  void disarm() { deadline_.cancel(); }

 private:
  net::Deadline deadline_;
};

}  // namespace portier::login
