#include "login/governor.hpp"

#include <algorithm>

#include "net/address.hpp"

namespace portier::login {

std::string Governor::ip_key(const asio::ip::address& ip, unsigned ipv6_prefix) {
  if (ip.is_v4()) return net::to_text(ip);
  auto v6 = ip.to_v6();
  if (v6.is_v4_mapped()) return net::plain_text(ip);
  if (ipv6_prefix == 0 || ipv6_prefix > 128) ipv6_prefix = 128;
  auto b = v6.to_bytes();
  for (unsigned i = 0; i < 16; ++i) {
    unsigned bit = i * 8;
    if (bit >= ipv6_prefix) b[i] = 0;
    else if (ipv6_prefix - bit < 8) b[i] &= static_cast<unsigned char>(0xff00u >> (ipv6_prefix - bit));
  }
  // The scope id is not part of the key: fe80::1%eth0 and fe80::1%eth1 group together.
  return asio::ip::address_v6(b).to_string() + "/" + std::to_string(ipv6_prefix);
}

Governor::Lease& Governor::Lease::operator=(Lease&& o) noexcept {
  if (this != &o) {
    release();
    gov_ = o.gov_;
    kind_ = o.kind_;
    key_ = std::move(o.key_);
    o.gov_ = nullptr;
    o.key_.clear();
  }
  return *this;
}

void Governor::Lease::release() {
  Governor* g = gov_;
  gov_ = nullptr;
  if (!g) return;
  if (kind_ == Kind::Connection) g->release_connection(key_);
  else g->release_user(key_);
}

Governor::Admit Governor::admit_connection(const std::string& key, unsigned max_total,
                                           unsigned max_per_ip, Lease& lease) {
  lease.release();
  {
    std::lock_guard lock(mu_);
    if (max_total && total_ >= max_total) return Admit::TooManyTotal;
    auto& n = per_ip_[key];
    if (max_per_ip && n >= max_per_ip) {
      if (n == 0) per_ip_.erase(key);
      return Admit::TooManyFromIp;
    }
    ++n;
    ++total_;
  }
  lease = Lease(this, Lease::Kind::Connection, key);
  return Admit::Ok;
}

void Governor::release_connection(const std::string& key) {
  std::lock_guard lock(mu_);
  auto it = per_ip_.find(key);
  if (it != per_ip_.end() && --it->second == 0) per_ip_.erase(it);
  if (total_ > 0) --total_;
}

unsigned Governor::connections_from(const std::string& key) const {
  std::lock_guard lock(mu_);
  auto it = per_ip_.find(key);
  return it == per_ip_.end() ? 0 : it->second;
}

size_t Governor::connections() const {
  std::lock_guard lock(mu_);
  return total_;
}

bool Governor::admit_user(const std::string& user, unsigned max, Lease& lease) {
  lease.release();
  {
    std::lock_guard lock(mu_);
    auto& n = per_user_[user];
    if (max && n >= max) {
      if (n == 0) per_user_.erase(user);
      return false;
    }
    ++n;
  }
  lease = Lease(this, Lease::Kind::User, user);
  return true;
}

void Governor::release_user(const std::string& user) {
  std::lock_guard lock(mu_);
  auto it = per_user_.find(user);
  if (it != per_user_.end() && --it->second == 0) per_user_.erase(it);
}

void Governor::prune_penalties(Clock::time_point now) {
  // Bounded memory under a flood of distinct IPs: drop stale entries at most
  // once a minute.
  if (now - last_prune_ < std::chrono::minutes(1)) return;
  last_prune_ = now;
  std::erase_if(penalties_, [&](const auto& kv) { return now - kv.second.last > kPenaltyWindow; });
}

std::chrono::milliseconds Governor::failure_delay(const std::string& key,
                                                  std::chrono::milliseconds base,
                                                  std::chrono::milliseconds cap) {
  if (cap <= base || base.count() <= 0) return base;  // no delay configured: no penalty
  std::lock_guard lock(mu_);
  auto it = penalties_.find(key);
  if (it == penalties_.end()) return base;
  if (Clock::now() - it->second.last > kPenaltyWindow) return base;
  unsigned doublings = std::min(it->second.failures, 16u);
  auto d = base;
  for (unsigned i = 1; i < doublings && d < cap; ++i) d *= 2;
  return std::min(d, cap);
}

void Governor::record_auth_failure(const std::string& key) {
  std::lock_guard lock(mu_);
  auto now = Clock::now();
  prune_penalties(now);
  auto& p = penalties_[key];
  if (now - p.last > kPenaltyWindow) p.failures = 0;
  ++p.failures;
  p.last = now;
}

void Governor::record_auth_success(const std::string& key) {
  std::lock_guard lock(mu_);
  penalties_.erase(key);
}

bool Governor::host_fast_fail(const std::string& key, std::chrono::milliseconds threshold,
                              std::chrono::seconds& down_for, int64_t& last_success_unix) {
  if (threshold.count() <= 0) return false;
  std::lock_guard lock(mu_);
  auto it = hosts_.find(key);
  if (it == hosts_.end()) return false;
  const Host& h = it->second;
  if (h.last_failure <= h.last_success || h.failing_since == Clock::time_point{}) return false;
  auto failing = Clock::now() - h.failing_since;
  if (failing <= threshold || h.waiting < 1) return false;
  down_for = std::chrono::duration_cast<std::chrono::seconds>(failing);
  last_success_unix = h.last_success_unix;
  return true;
}

void Governor::host_waiting(const std::string& key, int delta) {
  std::lock_guard lock(mu_);
  hosts_[key].waiting += delta;
}

void Governor::host_result(const std::string& key, bool ok) {
  std::lock_guard lock(mu_);
  auto now = Clock::now();
  Host& h = hosts_[key];
  if (ok) {
    h.last_success = now;
    h.failing_since = {};
    h.last_success_unix =
        std::chrono::duration_cast<std::chrono::seconds>(
            std::chrono::system_clock::now().time_since_epoch())
            .count();
  } else {
    if (h.failing_since == Clock::time_point{} || h.last_success > h.last_failure)
      h.failing_since = now;
    h.last_failure = now;
  }
}

}  // namespace portier::login
