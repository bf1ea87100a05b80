#include "login/counters.hpp"

#include <ctime>
#include <memory>
#include <vector>

namespace portier::login {

namespace {
std::mutex g_all_mu;
std::vector<std::shared_ptr<Counters>>& all() {
  static std::vector<std::shared_ptr<Counters>> v;  // workers' counters outlive them
  return v;
}
using N = std::atomic<uint64_t>;
uint64_t r(const N& n) { return n.load(std::memory_order_relaxed); }

template <size_t K>
void add_all(std::array<uint64_t, K>& to, const std::array<uint64_t, K>& from) {
  for (size_t i = 0; i < K; ++i) to[i] += from[i];
}
template <size_t K>
void read_all(std::array<uint64_t, K>& to, const std::array<N, K>& from) {
  for (size_t i = 0; i < K; ++i) to[i] += r(from[i]);
}

std::atomic<uint64_t> g_reloads_ok{0}, g_reloads_failed{0};
std::atomic<int64_t> g_last_reload_ok{0};
}  // namespace

void HistogramData::add(const HistogramData& o) {
  add_all(buckets, o.buckets);
  sum_us += o.sum_us;
  count += o.count;
}

void Histogram::observe(std::chrono::microseconds d) {
  const double secs = static_cast<double>(d.count()) / 1e6;
  size_t i = 0;
  while (i < kLatencyBounds.size() && secs > kLatencyBounds[i]) ++i;
  bump(buckets[i]);
  bump(sum_us, static_cast<uint64_t>(std::max<int64_t>(d.count(), 0)));
  bump(count);
}

void Histogram::snapshot_into(HistogramData& o) const {
  read_all(o.buckets, buckets);
  o.sum_us += r(sum_us);
  o.count += r(count);
}

struct Counters::Live {
  N connections{0}, connections_closed{0}, connections_refused{0}, preface_refused{0},
      prelogin_ended{0}, auth_failed{0}, auth_tempfail{0}, logins{0}, proxy_retries{0},
      relays_ended{0}, bytes_in{0}, bytes_out{0}, failure_delays{0}, failure_delay_ms{0},
      penalized{0};
  std::array<N, kEndSideNames.size()> relays_ended_by{};
  std::array<N, kLoginResultNames.size()> login_results{};
  std::array<N, kLimitNames.size()> limit_refusals{};
  std::array<std::array<N, 2>, kTlsLegNames.size()> tls{};
  Histogram login_duration, backend_login_duration;
  std::map<std::pair<std::string, std::string>, uint64_t> proxy_failures;  // under Counters::mu_

  void snapshot_into(ServiceCounters& o) const {
    o.connections += r(connections);
    o.connections_closed += r(connections_closed);
    o.connections_refused += r(connections_refused);
    o.preface_refused += r(preface_refused);
    o.prelogin_ended += r(prelogin_ended);
    o.auth_failed += r(auth_failed);
    o.auth_tempfail += r(auth_tempfail);
    o.logins += r(logins);
    o.proxy_retries += r(proxy_retries);
    o.relays_ended += r(relays_ended);
    o.bytes_in += r(bytes_in);
    o.bytes_out += r(bytes_out);
    o.failure_delays += r(failure_delays);
    o.failure_delay_ms += r(failure_delay_ms);
    o.penalized += r(penalized);
    read_all(o.relays_ended_by, relays_ended_by);
    read_all(o.login_results, login_results);
    read_all(o.limit_refusals, limit_refusals);
    for (size_t i = 0; i < tls.size(); ++i) read_all(o.tls[i], tls[i]);
    login_duration.snapshot_into(o.login_duration);
    backend_login_duration.snapshot_into(o.backend_login_duration);
    for (const auto& [k, n] : proxy_failures) o.proxy_failures[k] += n;
  }
};

struct Counters::PassdbLive {
  std::array<N, kPassdbResultNames.size()> results{};
  Histogram duration;
};

void ServiceCounters::add(const ServiceCounters& o) {
  connections += o.connections;
  connections_closed += o.connections_closed;
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
  failure_delays += o.failure_delays;
  failure_delay_ms += o.failure_delay_ms;
  penalized += o.penalized;
  add_all(relays_ended_by, o.relays_ended_by);
  add_all(login_results, o.login_results);
  add_all(limit_refusals, o.limit_refusals);
  for (size_t i = 0; i < tls.size(); ++i) add_all(tls[i], o.tls[i]);
  login_duration.add(o.login_duration);
  backend_login_duration.add(o.backend_login_duration);
  for (const auto& [k, n] : o.proxy_failures) proxy_failures[k] += n;
}

void LmtpCounters::add(const LmtpCounters& o) {
  sessions += o.sessions;
  sessions_ended += o.sessions_ended;
  messages += o.messages;
  bytes += o.bytes;
  for (size_t i = 0; i < recipients.size(); ++i) add_all(recipients[i], o.recipients[i]);
  add_all(backend_connections, o.backend_connections);
  data_duration.add(o.data_duration);
}

struct Counters::SiblingLive {
  N lmtp_sessions{0}, lmtp_sessions_ended{0}, lmtp_messages{0}, lmtp_bytes{0};
  std::array<std::array<N, kDeliveryReasonNames.size()>, kDeliveryResultNames.size()> lmtp_recipients{};
  std::array<N, 2> lmtp_backend{};
  Histogram lmtp_data_duration;
  std::array<N, kDoveadmResultNames.size()> doveadm{};
};

Counters::Counters() : sibling_(std::make_unique<SiblingLive>()) {}
Counters::~Counters() = default;

void PassdbCounters::add(const PassdbCounters& o) {
  add_all(results, o.results);
  duration.add(o.duration);
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

std::map<std::pair<std::string, std::string>, ServiceCounters> Counters::sum_by_listener() {
  std::map<std::pair<std::string, std::string>, ServiceCounters> out;
  std::lock_guard lk(g_all_mu);
  for (const auto& c : all()) {
    std::lock_guard lk2(c->mu_);
    for (const auto& [key, live] : c->by_slot_) live->snapshot_into(out[key]);
  }
  return out;
}

std::map<std::string, ServiceCounters> Counters::sum() {
  std::map<std::string, ServiceCounters> out;
  for (const auto& [key, s] : sum_by_listener()) out[key.first].add(s);
  return out;
}

std::map<std::string, PassdbCounters> Counters::passdb_sum() {
  std::map<std::string, PassdbCounters> out;
  std::lock_guard lk(g_all_mu);
  for (const auto& c : all()) {
    std::lock_guard lk2(c->mu_);
    for (const auto& [name, p] : c->by_passdb_) {
      auto& o = out[name];
      read_all(o.results, p->results);
      p->duration.snapshot_into(o.duration);
    }
  }
  return out;
}

LmtpCounters Counters::lmtp_sum() {
  LmtpCounters o;
  std::lock_guard lk(g_all_mu);
  for (const auto& c : all()) {
    const SiblingLive& s = *c->sibling_;
    o.sessions += r(s.lmtp_sessions);
    o.sessions_ended += r(s.lmtp_sessions_ended);
    o.messages += r(s.lmtp_messages);
    o.bytes += r(s.lmtp_bytes);
    for (size_t i = 0; i < o.recipients.size(); ++i) read_all(o.recipients[i], s.lmtp_recipients[i]);
    read_all(o.backend_connections, s.lmtp_backend);
    s.lmtp_data_duration.snapshot_into(o.data_duration);
  }
  return o;
}

std::array<uint64_t, kDoveadmResultNames.size()> Counters::doveadm_sum() {
  std::array<uint64_t, kDoveadmResultNames.size()> o{};
  std::lock_guard lk(g_all_mu);
  for (const auto& c : all()) read_all(o, c->sibling_->doveadm);
  return o;
}

void Counters::lmtp_session(bool opened) {
  bump(opened ? sibling_->lmtp_sessions : sibling_->lmtp_sessions_ended);
}
void Counters::lmtp_recipient(DeliveryResult res, DeliveryReason why) {
  bump(sibling_->lmtp_recipients[static_cast<size_t>(res)][static_cast<size_t>(why)]);
}
void Counters::lmtp_backend_connection(bool ok) { bump(sibling_->lmtp_backend[ok ? 0 : 1]); }
void Counters::lmtp_message(uint64_t bytes, std::chrono::microseconds took) {
  bump(sibling_->lmtp_messages);
  bump(sibling_->lmtp_bytes, bytes);
  sibling_->lmtp_data_duration.observe(took);
}
void Counters::doveadm_command(DoveadmResult res) { bump(sibling_->doveadm[static_cast<size_t>(res)]); }

Counters::Live& Counters::slot(std::string_view service, std::string_view listener) {
  if (last_slot_ && last_slot_key_.first == service && last_slot_key_.second == listener)
    return *last_slot_;
  std::pair<std::string, std::string> key{service, listener};
  std::lock_guard lk(mu_);
  auto& p = by_slot_[key];
  if (!p) p = std::make_unique<Live>();
  last_slot_key_ = std::move(key);
  last_slot_ = p.get();
  return *p;
}

Counters::PassdbLive& Counters::passdb(std::string_view name) {
  if (last_passdb_ && last_passdb_key_ == name) return *last_passdb_;
  std::lock_guard lk(mu_);
  auto it = by_passdb_.find(name);
  if (it == by_passdb_.end())
    it = by_passdb_.emplace(std::string(name), std::make_unique<PassdbLive>()).first;
  last_passdb_key_ = std::string(name);
  last_passdb_ = it->second.get();
  return *it->second;
}

void Counters::connection_opened(Live& l) { bump(l.connections); }
void Counters::connection_closed(Live& l) { bump(l.connections_closed); }
void Counters::login_result(Live& l, LoginResult res) {
  bump(l.login_results[static_cast<size_t>(res)]);
}
void Counters::tls_handshake(Live& l, TlsLeg leg, bool ok) {
  bump(l.tls[static_cast<size_t>(leg)][ok ? 0 : 1]);
}
void Counters::failure_delay(Live& l, std::chrono::milliseconds d, bool penalized) {
  bump(l.failure_delays);
  bump(l.failure_delay_ms, static_cast<uint64_t>(d.count()));
  if (penalized) bump(l.penalized);
}
void Counters::login_duration(Live& l, std::chrono::microseconds d) { l.login_duration.observe(d); }
void Counters::backend_login_duration(Live& l, std::chrono::microseconds d) {
  l.backend_login_duration.observe(d);
}
void Counters::passdb_request(PassdbLive& p, size_t result, std::chrono::microseconds d) {
  if (result < p.results.size()) bump(p.results[result]);
  p.duration.observe(d);
}

void Counters::reloaded(bool ok) {
  if (ok) {
    g_reloads_ok.fetch_add(1, std::memory_order_relaxed);
    g_last_reload_ok.store(static_cast<int64_t>(std::time(nullptr)), std::memory_order_relaxed);
  } else {
    g_reloads_failed.fetch_add(1, std::memory_order_relaxed);
  }
}

ReloadCounters Counters::reloads() {
  return {g_reloads_ok.load(std::memory_order_relaxed),
          g_reloads_failed.load(std::memory_order_relaxed),
          g_last_reload_ok.load(std::memory_order_relaxed)};
}

void Counters::count(std::string_view service, const events::Event& ev, std::string_view state) {
  count(slot(service), ev, state);
}

void Counters::count(Live& c, const events::Event& ev, std::string_view state) {
  std::visit(
      [&](const auto& e) {
        using T = std::decay_t<decltype(e)>;
        if constexpr (std::is_same_v<T, events::ConnectionRefused>) {
          bump(c.connections_refused);
          bump(c.limit_refusals[static_cast<size_t>(e.per_ip ? Limit::MaxConnectionsPerIp
                                                             : Limit::MaxConnections)]);
        } else if constexpr (std::is_same_v<T, events::PrefaceRefused>) {
          if (!e.quiet) bump(c.preface_refused);
        } else if constexpr (std::is_same_v<T, events::PreloginEnded>) {
          bump(c.prelogin_ended);
        } else if constexpr (std::is_same_v<T, events::AuthRefused>) {
          if (e.why == events::AuthRefused::Why::TempFail) bump(c.auth_tempfail);
          else bump(c.auth_failed);
        } else if constexpr (std::is_same_v<T, events::UserLimit>) {
          bump(c.limit_refusals[static_cast<size_t>(Limit::MaxSessionsPerUser)]);
        } else if constexpr (std::is_same_v<T, events::ProxyRetry>) {
          bump(c.proxy_retries);
        } else if constexpr (std::is_same_v<T, events::ProxyFailed>) {
          std::lock_guard lk(mu_);
          ++c.proxy_failures[{std::string(failure_type_name(e.failure->type)), std::string(state)}];
        } else if constexpr (std::is_same_v<T, events::ProxyStarted>) {
          bump(c.logins);
        } else if constexpr (std::is_same_v<T, events::RelayEnded>) {
          bump(c.relays_ended);
          const auto side = static_cast<size_t>(e.result->side);
          if (side < c.relays_ended_by.size()) bump(c.relays_ended_by[side]);
          bump(c.bytes_in, e.result->in);
          bump(c.bytes_out, e.result->out);
          // The relay owned the client connection: it closes here.
          bump(c.connections_closed);
        }
      },
      ev);
}

}  // namespace portier::login
