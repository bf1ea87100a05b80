#pragma once
// Process-wide admission and penalty bookkeeping shared by all workers:
// connection limits (total, per client IP), concurrent proxied sessions per
// user, the per-IP authentication-failure penalty, and the per-backend
// up/down record behind fast failure (proxy_host_immediate_failure_after).
//
// Thread-safe (one mutex; touched a few times per session, never per byte).
// Lives as long as the Server; survives config reloads (limits are passed in
// per call from the session's snapshot).

#include <asio/ip/address.hpp>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

namespace portier::login {

class Governor {
 public:
  using Clock = std::chrono::steady_clock;

  /// The key an address is counted and penalised under: an IPv4 address (also
  /// when IPv4-mapped, ::ffff:a.b.c.d) as itself; an IPv6 address grouped by
  /// its first `ipv6_prefix` bits (1..128; /64 by default), written
  /// `<network>/<prefix>` — whoever holds a /64 must not get 2^64 budgets.
  static std::string ip_key(const asio::ip::address& ip, unsigned ipv6_prefix = 64);

  /// A held count (connection or per-user session). Releases exactly the key
  /// it was admitted under, once: when destroyed or on release(). Movable,
  /// so it can follow the connection from the session into the relay.
  class Lease {
   public:
    Lease() = default;
    Lease(Lease&& o) noexcept { *this = std::move(o); }
    Lease& operator=(Lease&& o) noexcept;
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    ~Lease() { release(); }
    void release();
    explicit operator bool() const { return gov_ != nullptr; }
    const std::string& key() const { return key_; }

   private:
    friend class Governor;
    enum class Kind { Connection, User };
    Lease(Governor* g, Kind k, std::string key) : gov_(g), kind_(k), key_(std::move(key)) {}
    Governor* gov_ = nullptr;
    Kind kind_ = Kind::Connection;
    std::string key_;
  };

  enum class Admit { Ok, TooManyTotal, TooManyFromIp };
  /// Count a new client connection under `ip_key` (see ip_key(); 0 = unlimited).
  /// On Ok, `lease` holds the count until it is released or destroyed.
  Admit admit_connection(const std::string& ip_key, unsigned max_total, unsigned max_per_ip,
                         Lease& lease);

  /// Count a proxied session for `user` (0 = unlimited); held by `lease`.
  bool admit_user(const std::string& user, unsigned max, Lease& lease);

  /// Delay before answering a failed login from `ip_key`: `base` doubled for
  /// each failure in the last `kPenaltyWindow`, capped at `cap` (cap 0 = `base`).
  std::chrono::milliseconds failure_delay(const std::string& ip_key,
                                          std::chrono::milliseconds base,
                                          std::chrono::milliseconds cap);
  void record_auth_failure(const std::string& ip_key);
  void record_auth_success(const std::string& ip_key);

  /// Current count for an IP key (tests, diagnostics).
  unsigned connections_from(const std::string& ip_key) const;

  /// Backend records (key "ip:port").
  /// True when the host should fail at once: its last failure is newer than its
  /// last success, it has been failing longer than `threshold`, and another login
  /// is already waiting on it. `down_for` is set for the log line.
  bool host_fast_fail(const std::string& key, std::chrono::milliseconds threshold,
                      std::chrono::seconds& down_for, int64_t& last_success_unix);
  void host_waiting(const std::string& key, int delta);
  void host_result(const std::string& key, bool ok);

  static constexpr auto kPenaltyWindow = std::chrono::minutes(5);

  size_t connections() const;

  /// Sessions currently logging in to a backend (for graceful shutdown).
  void backend_login_started() { ++backend_logins_; }
  void backend_login_finished() { --backend_logins_; }
  size_t backend_logins() const { return backend_logins_.load(); }

 private:
  void release_connection(const std::string& ip_key);
  void release_user(const std::string& user);

  struct Penalty {
    unsigned failures = 0;
    Clock::time_point last;
  };
  struct Host {
    Clock::time_point last_success{};
    Clock::time_point last_failure{};
    Clock::time_point failing_since{};
    int64_t last_success_unix = 0;
    int waiting = 0;
  };
  void prune_penalties(Clock::time_point now);

  std::atomic<size_t> backend_logins_{0};
  mutable std::mutex mu_;
  size_t total_ = 0;
  std::unordered_map<std::string, unsigned> per_ip_;
  std::unordered_map<std::string, unsigned> per_user_;
  std::unordered_map<std::string, Penalty> penalties_;
  std::unordered_map<std::string, Host> hosts_;
  Clock::time_point last_prune_{};
};

}  // namespace portier::login
