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

void ServiceCounters::add(const ServiceCounters& o) {
  connections_refused += o.connections_refused;
  preface_refused += o.preface_refused;
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
    for (const auto& [svc, sc] : c->by_service_) out[svc].add(sc);
  }
  return out;
}

void Counters::count(std::string_view service, const events::Event& ev, std::string_view state) {
  std::lock_guard lk(mu_);
  auto it = by_service_.find(service);
  if (it == by_service_.end()) it = by_service_.emplace(std::string(service), ServiceCounters{}).first;
  ServiceCounters& c = it->second;
  std::visit(
      [&](const auto& e) {
        using T = std::decay_t<decltype(e)>;
        if constexpr (std::is_same_v<T, events::ConnectionRefused>) {
          ++c.connections_refused;
        } else if constexpr (std::is_same_v<T, events::PrefaceRefused>) {
          if (!e.quiet) ++c.preface_refused;
        } else if constexpr (std::is_same_v<T, events::PreloginEnded>) {
          ++c.prelogin_ended;
        } else if constexpr (std::is_same_v<T, events::AuthRefused>) {
          if (e.why == events::AuthRefused::Why::TempFail) ++c.auth_tempfail;
          else ++c.auth_failed;
        } else if constexpr (std::is_same_v<T, events::ProxyRetry>) {
          ++c.proxy_retries;
        } else if constexpr (std::is_same_v<T, events::ProxyFailed>) {
          ++c.proxy_failures[{std::string(failure_type_name(e.failure->type)), std::string(state)}];
        } else if constexpr (std::is_same_v<T, events::ProxyStarted>) {
          ++c.logins;
        } else if constexpr (std::is_same_v<T, events::RelayEnded>) {
          ++c.relays_ended;
          c.bytes_in += e.result->in;
          c.bytes_out += e.result->out;
        }
      },
      ev);
}

}  // namespace portier::login
