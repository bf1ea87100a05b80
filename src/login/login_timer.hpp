#pragma once
// The pre-login timer of a session: one deadline (login.client_timeout) whose
// expiry runs a callback, and the bounded write of a goodbye. A generation
// counter and a liveness token keep a handler that was already queued when
// the timer was re-armed, cancelled or destroyed from acting.
//
// Owns: one asio timer. Uses: asio.

#include <asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <memory>

namespace portier::login {

class LoginTimer {
 public:
  explicit LoginTimer(const asio::any_io_executor& ex) : timer_(ex) {}

  /// Run `on_expiry` after `d` unless disarmed or re-armed first.
  void arm(std::chrono::milliseconds d, std::function<void()> on_expiry) {
    timer_.expires_after(d);
    timer_.async_wait([alive = std::weak_ptr<int>(alive_), gen = ++gen_, this,
                       f = std::move(on_expiry)](const asio::error_code& ec) {
      // A handler can already be queued when the timer is cancelled or the
      // session ends: check both before touching anything.
      if (ec || alive.expired() || gen != gen_) return;
      f();
    });
  }
  void disarm() {
    ++gen_;
    timer_.cancel();
  }

 private:
  asio::steady_timer timer_;
  unsigned gen_ = 0;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
};

}  // namespace portier::login
