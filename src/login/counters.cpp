#include "login/counters.hpp"

#include <memory>
#include <vector>

namespace portier::login {

namespace {
std::mutex g_all_mu;
std::vector<std::shared_ptr<Counters>>& all() {
  static std::vector<std::shared_ptr<Counters>> v;  // workers' counters outlive them
  return v;
}
}  // namespace

struct Counters::Live {
  using N = std::atomic<uint64_t>;
  N connections_refused{0}, prelogin_ended{0}, auth_failed{0}, auth_tempfail{0}, logins{0},
      proxy_retries{0}, relays_ended{0}, bytes_in{0}, bytes_out{0};
  std::map<std::pair<std::string, std::string>, uint64_t> proxy_failures;  // under Counters::mu_

  // One writer: a relaxed load + store is an increment without a locked instruction.
  static void add(N& n, uint64_t v) { n.store(n.load(std::memory_order_relaxed) + v, std::memory_order_relaxed); }
  void snapshot_into(ServiceCounters& o) const {
    auto r = [](const N& n) { return n.load(std::memory_order_relaxed); };
    o.connections_refused += r(connections_refused);
    o.prelogin_ended += r(prelogin_ended);
    o.auth_failed += r(auth_failed);
    o.auth_tempfail += r(auth_tempfail);
    o.logins += r(logins);
    o.proxy_retries += r(proxy_retries);
    o.relays_ended += r(relays_ended);
    o.bytes_in += r(bytes_in);
    o.bytes_out += r(bytes_out);
    for (const auto& [k, n] : proxy_failures) o.proxy_failures[k] += n;
  }
};

void ServiceCounters::add(const ServiceCounters& o) {
  connections_refused += o.connections_refused;
  prelogin_ended += o.prelogin_ended;
  auth_failed += o.auth_failed;
  auth_tempfail += o.auth_tempfail;
  logins += o.logins;
  proxy_retries += o.proxy_retries;
  relays_ended += o.relays_ended;
  bytes_in += o.bytes_in;
  bytes_out += o.bytes_out;
  for (const auto& [k, n] : o.proxy_failures) proxy_failures[k] += n;
}

Counters& Counters::local() {
  thread_local std::shared_ptr<Counters> mine = [] {
    auto c = std::make_shared<Counters>();
    std::lock_guard lk(g_all_mu);
    all().push_back(c);
    return c;
  }();
  return *mine;
}

std::map<std::string, ServiceCounters> Counters::sum() {
  std::map<std::string, ServiceCounters> out;
  std::lock_guard lk(g_all_mu);
  for (const auto& c : all()) {
    std::lock_guard lk2(c->mu_);
    for (const auto& [svc, live] : c->by_service_) live->snapshot_into(out[svc]);
  }
  return out;
}

Counters::Live& Counters::slot(std::string_view service) {
  std::lock_guard lk(mu_);
  auto it = by_service_.find(service);
  if (it == by_service_.end())
    it = by_service_.emplace(std::string(service), std::make_unique<Live>()).first;
  return *it->second;
}

void Counters::count(std::string_view service, const events::Event& ev, std::string_view state) {
  count(slot(service), ev, state);
}

void Counters::count(Live& c, const events::Event& ev, std::string_view state) {
  using L = Live;
  std::visit(
      [&](const auto& e) {
        using T = std::decay_t<decltype(e)>;
        if constexpr (std::is_same_v<T, events::ConnectionRefused>) {
          L::add(c.connections_refused, 1);
        } else if constexpr (std::is_same_v<T, events::PreloginEnded>) {
          L::add(c.prelogin_ended, 1);
        } else if constexpr (std::is_same_v<T, events::AuthRefused>) {
          if (e.why == events::AuthRefused::Why::TempFail) L::add(c.auth_tempfail, 1);
          else L::add(c.auth_failed, 1);
        } else if constexpr (std::is_same_v<T, events::ProxyRetry>) {
          L::add(c.proxy_retries, 1);
        } else if constexpr (std::is_same_v<T, events::ProxyFailed>) {
          std::lock_guard lk(mu_);
          ++c.proxy_failures[{std::string(failure_type_name(e.failure->type)), std::string(state)}];
        } else if constexpr (std::is_same_v<T, events::ProxyStarted>) {
          L::add(c.logins, 1);
        } else if constexpr (std::is_same_v<T, events::RelayEnded>) {
          L::add(c.relays_ended, 1);
          L::add(c.bytes_in, e.result->in);
          L::add(c.bytes_out, e.result->out);
        }
      },
      ev);
}

}  // namespace portier::login
