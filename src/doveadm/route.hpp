#pragma once
// Inside the doveadm module (service.cpp, http_api.cpp): where a user's
// doveadm commands go, and the deadline that bounds every wait.
// Owns: nothing. May use: login/runtime (Snapshot), passdb, asio.

#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>
#include <algorithm>
#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "login/runtime.hpp"
#include "net/awaitable.hpp"

namespace portier::doveadm {

/// The passdb's answer for one user, for doveadm (protocol "doveadm",
/// lookup_only). `code` "" = routed; else the doveadm status ("NOUSER",
/// "TEMPFAIL") with `why` for the log and the client.
struct Route {
  std::string code, why;
  std::string host;      ///< hostip, else host (an IP)
  uint16_t port = 0;     ///< passdb `port` when [doveadm] passdb_port allows, else [doveadm] port
  std::string destuser;  ///< destuser, else the passdb's user name
};
net::Task<Route> route(const login::Snapshot& snap, const std::string& user, const std::string& rip);

/// The HTTP API side (http_api.cpp): one command forwarded to the user's
/// backend's doveadm HTTP API; never throws, always a response element.
net::Task<nlohmann::json> http_forward(std::shared_ptr<const login::Snapshot> snap, nlohmann::json cmd);

/// Cancels the watched sockets when an armed deadline passes: every wait of
/// a doveadm session (client or backend) is bounded by [doveadm] timeout.
class Deadline {
 public:
  explicit Deadline(const asio::any_io_executor& ex) : timer_(ex) {}
  ~Deadline() { *alive_ = false; }
  Deadline(const Deadline&) = delete;
  Deadline& operator=(const Deadline&) = delete;
  void watch(asio::ip::tcp::socket* s) { socks_.push_back(s); }
  void unwatch(asio::ip::tcp::socket* s) { socks_.erase(std::remove(socks_.begin(), socks_.end(), s), socks_.end()); }
  void arm(std::chrono::milliseconds d) {
    expired_ = false;
    timer_.expires_after(d);
    timer_.async_wait([this, alive = alive_](asio::error_code ec) {
      if (ec || !*alive) return;
      expired_ = true;
      for (auto* s : socks_) {
        asio::error_code ignored;
        s->cancel(ignored);
      }
    });
  }
  void disarm() { timer_.cancel(); }
  bool expired() const { return expired_; }

 private:
  asio::steady_timer timer_;
  std::vector<asio::ip::tcp::socket*> socks_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  bool expired_ = false;
};

}  // namespace portier::doveadm
