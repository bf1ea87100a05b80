// metrics/: the exposition writer (escaping, histograms), the counters behind
// /metrics moved by exact amounts by events and counting points, and the
// whole render() accepted by `promtool check metrics` (Debian's prometheus
// package, installed by scripts/install-deps.sh: missing promtool fails).

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>

#include "lmtp/events.hpp"
#include "login/counters.hpp"
#include "metrics/exposition.hpp"
#include "metrics/prometheus.hpp"

using namespace portier;
using login::Counters;

namespace {

/// "name{labels}" -> value, for every sample line of an exposition.
std::map<std::string, double> parse(const std::string& text) {
  std::map<std::string, double> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    auto sp = line.rfind(' ');
    out[line.substr(0, sp)] = std::stod(line.substr(sp + 1));
  }
  return out;
}

double value(const std::map<std::string, double>& m, const std::string& series) {
  auto it = m.find(series);
  return it == m.end() ? 0 : it->second;
}

struct Promtool {
  int rc = -1;
  std::string output;
};

Promtool promtool_check(const std::string& text) {
  char path[] = "/tmp/portier-metrics-XXXXXX";
  int fd = mkstemp(path);
  EXPECT_GE(fd, 0);
  FILE* f = fdopen(fd, "w");
  fwrite(text.data(), 1, text.size(), f);
  fclose(f);
  Promtool r;
  const std::string cmd = std::string("promtool check metrics < ") + path + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  char buf[512];
  while (p && fgets(buf, sizeof buf, p)) r.output += buf;
  if (p) r.rc = WEXITSTATUS(pclose(p));
  std::remove(path);
  return r;
}

}  // namespace

TEST(MetricsExposition, LabelValuesAndHelpAreEscaped) {
  EXPECT_EQ(metrics::escape_label_value(R"(a\b"c)" "\n"), R"(a\\b\"c\n)");
  EXPECT_EQ(metrics::escape_help("x\\y\nz\""), "x\\\\y\\nz\"");
  metrics::Writer w;
  w.family("t_total", "counter", "help \\ with\nnewline");
  w.sample("t_total", {{"k", "v\"1"}, {"l", "x"}}, 3);
  w.sample("t_total", {}, 0.25);
  EXPECT_EQ(w.text(),
            "# HELP t_total help \\\\ with\\nnewline\n# TYPE t_total counter\n"
            "t_total{k=\"v\\\"1\",l=\"x\"} 3\nt_total 0.25\n");
}

TEST(MetricsExposition, ValuesAreExactIntegersOrShortestFloats) {
  EXPECT_EQ(metrics::format_value(0), "0");
  EXPECT_EQ(metrics::format_value(123456789012), "123456789012");
  EXPECT_EQ(metrics::format_value(0.0005), "0.0005");
  EXPECT_EQ(metrics::format_value(1.5), "1.5");
}

TEST(MetricsExposition, HistogramBucketsAreCumulativeWithInf) {
  metrics::Writer w;
  const double bounds[] = {0.1, 1};
  const uint64_t buckets[] = {2, 0, 1};
  w.histogram("h_seconds", {{"p", "imap"}}, bounds, buckets, 7.5);
  EXPECT_EQ(w.text(),
            "h_seconds_bucket{p=\"imap\",le=\"0.1\"} 2\n"
            "h_seconds_bucket{p=\"imap\",le=\"1\"} 2\n"
            "h_seconds_bucket{p=\"imap\",le=\"+Inf\"} 3\n"
            "h_seconds_sum{p=\"imap\"} 7.5\n"
            "h_seconds_count{p=\"imap\"} 3\n");
}

TEST(Metrics, ProtocolOfService) {
  EXPECT_EQ(metrics::protocol_of("imap-login"), "imap");
  EXPECT_EQ(metrics::protocol_of("managesieve-login"), "managesieve");
  EXPECT_EQ(metrics::protocol_of("odd"), "odd");
}

// Events and counting points move the rendered counters by exactly the
// amounts fed, summed over workers (two threads here).
TEST(Metrics, CountersMoveByExactAmounts) {
  const auto before = parse(metrics::render());
  auto feed = [] {
    auto& c = Counters::local();
    auto& l = c.slot("mtest-login", "127.0.0.9:1143");
    login::ProxyFailure f{login::FailureType::AuthReplied, "x", {}};
    login::ProxyFailure cf{login::FailureType::Connect, "x", {}};
    relay::Result r;
    r.in = 10;
    r.out = 200;
    r.side = relay::EndSide::Server;
    for (int i = 0; i < 3; ++i) Counters::connection_opened(l);
    Counters::connection_closed(l);
    c.count(l, login::events::ProxyStarted{});
    c.count(l, login::events::ProxyStarted{});
    c.count(l, login::events::RelayEnded{&r});  // closes a connection too
    c.count(l, login::events::ProxyFailed{&f, true}, "id+login/banner");
    c.count(l, login::events::ProxyRetry{&cf, 1}, "banner");
    c.count(l, login::events::ConnectionRefused{true, 5});
    c.count(l, login::events::UserLimit{2});
    c.count(l, login::events::PrefaceRefused{"x", false});
    c.count(l, login::events::PrefaceRefused{"x", true});  // health check: not a refusal
    Counters::login_result(l, login::LoginResult::Success);
    Counters::login_result(l, login::LoginResult::PasswordMismatch);
    Counters::login_result(l, login::LoginResult::BackendFailed);
    Counters::tls_handshake(l, login::TlsLeg::Client, true);
    Counters::tls_handshake(l, login::TlsLeg::Backend, false);
    Counters::failure_delay(l, std::chrono::milliseconds(1500), true);
    Counters::login_duration(l, std::chrono::microseconds(3000));   // (0.0025, 0.005]
    Counters::backend_login_duration(l, std::chrono::seconds(20));  // +Inf
    Counters::passdb_request(c.passdb("mtest-db"), 1, std::chrono::microseconds(400));
  };
  std::thread t1(feed), t2(feed);
  t1.join();
  t2.join();
  const auto after = parse(metrics::render());
  auto d = [&](const std::string& s) { return value(after, s) - value(before, s); };
  const std::string pl = "protocol=\"mtest\",listener=\"127.0.0.9:1143\"";
  EXPECT_EQ(d("portier_connections_total{" + pl + "}"), 6);
  EXPECT_EQ(d("portier_connections_current{" + pl + "}"), 2);  // 6 opened, 2 + 2 relays closed
  EXPECT_EQ(d("portier_proxy_sessions_established_total{" + pl + "}"), 4);
  EXPECT_EQ(d("portier_proxy_sessions_active{" + pl + "}"), 2);
  EXPECT_EQ(d("portier_proxy_sessions_finished_total{" + pl + ",disconnect_side=\"server\"}"), 2);
  EXPECT_EQ(d("portier_proxy_sessions_finished_total{" + pl + ",disconnect_side=\"client\"}"), 0);
  EXPECT_EQ(d("portier_proxy_bytes_total{" + pl + ",direction=\"in\"}"), 20);
  EXPECT_EQ(d("portier_proxy_bytes_total{" + pl + ",direction=\"out\"}"), 400);
  EXPECT_EQ(d("portier_preface_refusals_total{" + pl + "}"), 2);
  const std::string p = "protocol=\"mtest\"";
  EXPECT_EQ(d("portier_logins_total{" + p + ",result=\"success\"}"), 2);
  EXPECT_EQ(d("portier_logins_total{" + p + ",result=\"password_mismatch\"}"), 2);
  EXPECT_EQ(d("portier_logins_total{" + p + ",result=\"backend_failed\"}"), 2);
  EXPECT_EQ(d("portier_logins_total{" + p + ",result=\"user_unknown\"}"), 0);
  EXPECT_EQ(d("portier_backend_login_failures_total{" + p +
              ",type=\"auth-replied\",state=\"id+login/banner\"}"),
            2);
  EXPECT_EQ(d("portier_backend_login_retries_total{" + p + "}"), 2);
  EXPECT_EQ(d("portier_limit_refusals_total{" + p + ",limit=\"max_connections_per_ip\"}"), 2);
  EXPECT_EQ(d("portier_limit_refusals_total{" + p + ",limit=\"max_sessions_per_user\"}"), 2);
  EXPECT_EQ(d("portier_limit_refusals_total{" + p + ",limit=\"max_connections\"}"), 0);
  EXPECT_EQ(d("portier_tls_handshakes_total{" + p + ",leg=\"client\",result=\"ok\"}"), 2);
  EXPECT_EQ(d("portier_tls_handshakes_total{" + p + ",leg=\"backend\",result=\"failed\"}"), 2);
  EXPECT_EQ(d("portier_auth_failure_delays_total{" + p + "}"), 2);
  EXPECT_EQ(d("portier_auth_failure_delay_seconds_total{" + p + "}"), 3);
  EXPECT_EQ(d("portier_auth_penalties_total{" + p + "}"), 2);
  EXPECT_EQ(d("portier_login_duration_seconds_bucket{" + p + ",le=\"0.0025\"}"), 0);
  EXPECT_EQ(d("portier_login_duration_seconds_bucket{" + p + ",le=\"0.005\"}"), 2);
  EXPECT_EQ(d("portier_login_duration_seconds_bucket{" + p + ",le=\"+Inf\"}"), 2);
  EXPECT_DOUBLE_EQ(d("portier_login_duration_seconds_sum{" + p + "}"), 0.006);
  EXPECT_EQ(d("portier_login_duration_seconds_count{" + p + "}"), 2);
  EXPECT_EQ(d("portier_proxy_login_duration_seconds_bucket{" + p + ",le=\"10\"}"), 0);
  EXPECT_EQ(d("portier_proxy_login_duration_seconds_bucket{" + p + ",le=\"+Inf\"}"), 2);
  EXPECT_EQ(d("portier_passdb_requests_total{passdb=\"mtest-db\",result=\"password_mismatch\"}"), 2);
  EXPECT_EQ(d("portier_passdb_requests_total{passdb=\"mtest-db\",result=\"ok\"}"), 0);
  EXPECT_EQ(d("portier_passdb_request_duration_seconds_bucket{passdb=\"mtest-db\",le=\"0.0005\"}"), 2);
  // The per-service view (admin `stats`) agrees.
  const auto sums = Counters::sum();  // a copy: sum() returns a fresh map
  const auto& s = sums.at("mtest-login");
  EXPECT_EQ(s.logins, 4u);
  EXPECT_EQ(s.connections, 6u);
}

TEST(Metrics, ReloadsAndProcessFacts) {
  const auto before = parse(metrics::render());
  Counters::reloaded(true);
  Counters::reloaded(false);
  Counters::reloaded(false);
  const auto after = parse(metrics::render());
  EXPECT_EQ(value(after, "portier_config_reloads_total{result=\"ok\"}") -
                value(before, "portier_config_reloads_total{result=\"ok\"}"),
            1);
  EXPECT_EQ(value(after, "portier_config_reloads_total{result=\"failed\"}") -
                value(before, "portier_config_reloads_total{result=\"failed\"}"),
            2);
  EXPECT_GT(value(after, "portier_config_last_reload_success_timestamp_seconds"), 1.7e9);
  const auto p = metrics::process_facts();
  const double now = static_cast<double>(std::time(nullptr));
  EXPECT_GT(p.start_time_seconds, now - 3600);
  EXPECT_LE(p.start_time_seconds, now + 1);
  EXPECT_GT(p.resident_memory_bytes, 1e6);
  EXPECT_GE(p.open_fds, 3);
  EXPECT_GT(p.max_fds, 0);
  EXPECT_EQ(value(after, "process_open_fds") > 0, true);
  EXPECT_NE(metrics::render().find("portier_build_info{version=\""), std::string::npos);
  // The auth cache's counters (passdb::auth_cache_stats()) are exported too.
  EXPECT_TRUE(after.count("portier_auth_cache_hits_total"));
  EXPECT_TRUE(after.count("portier_auth_cache_entries"));
}

// LMTP events (lmtp/events.hpp) count into the thread's counters through the
// sink that logs them; doveadm commands count directly; summed over threads.
TEST(Metrics, LmtpAndDoveadmCountersMoveByExactAmounts) {
  const auto before = parse(metrics::render());
  auto feed = [] {
    using login::DeliveryReason;
    namespace ev = lmtp::events;
    const std::string sid = "mtest-sid";
    const ev::EventSink sink(sid);
    sink.emit(ev::Connected{"192.0.2.1"});
    sink.emit(ev::RcptRefused{"a@x.test", DeliveryReason::UnknownUser, 550, "user doesn't exist", {}});
    sink.emit(ev::RcptRefused{"b@x.test", DeliveryReason::Backend, 550, {}, "192.0.2.9:24"});
    sink.emit(ev::BackendOpened{"192.0.2.9:24", true});
    sink.emit(ev::BackendOpened{"192.0.2.8:24", false});
    sink.emit(ev::RcptRefused{"c@x.test", DeliveryReason::BackendFailure, 451, "Proxy failed (connect)",
                              "192.0.2.8:24"});
    sink.emit(ev::RcptDone{"d@x.test", "192.0.2.9:24", "250 2.0.0 ok", 250, DeliveryReason::Backend, 1, 2, 3});
    sink.emit(ev::RcptDone{"e@x.test", "192.0.2.9:24", "452 4.2.2 full", 452, DeliveryReason::Backend, 2, 2, 3});
    sink.emit(ev::MessageDone{1000, 2, std::chrono::milliseconds(3)});
    sink.emit(ev::Disconnected{"192.0.2.1", "Client has quit the connection"});
    Counters::local().doveadm_command(login::DoveadmResult::Ok);
    Counters::local().doveadm_command(login::DoveadmResult::UserUnknown);
  };
  std::thread t1(feed), t2(feed);
  t1.join();
  t2.join();
  const auto after = parse(metrics::render());
  auto d = [&](const std::string& s) { return value(after, s) - value(before, s); };
  EXPECT_EQ(d("portier_lmtp_sessions_total"), 2);
  EXPECT_EQ(d("portier_lmtp_sessions_current"), 0);
  EXPECT_EQ(d("portier_lmtp_recipients_total{result=\"delivered\",reason=\"backend\"}"), 2);
  EXPECT_EQ(d("portier_lmtp_recipients_total{result=\"permfail\",reason=\"backend\"}"), 2);
  EXPECT_EQ(d("portier_lmtp_recipients_total{result=\"tempfail\",reason=\"backend\"}"), 2);
  EXPECT_EQ(d("portier_lmtp_recipients_total{result=\"permfail\",reason=\"unknown_user\"}"), 2);
  EXPECT_EQ(d("portier_lmtp_recipients_total{result=\"tempfail\",reason=\"backend_failure\"}"), 2);
  EXPECT_EQ(d("portier_lmtp_messages_total"), 2);
  EXPECT_EQ(d("portier_lmtp_bytes_total"), 2000);
  EXPECT_EQ(d("portier_lmtp_backend_connections_total{result=\"ok\"}"), 2);
  EXPECT_EQ(d("portier_lmtp_backend_connections_total{result=\"failed\"}"), 2);
  EXPECT_EQ(d("portier_lmtp_data_duration_seconds_count"), 2);
  EXPECT_EQ(d("portier_lmtp_data_duration_seconds_bucket{le=\"0.005\"}"), 2);
  EXPECT_EQ(d("portier_lmtp_data_duration_seconds_bucket{le=\"0.0025\"}"), 0);
  EXPECT_EQ(d("portier_doveadm_commands_total{result=\"ok\"}"), 2);
  EXPECT_EQ(d("portier_doveadm_commands_total{result=\"user_unknown\"}"), 2);
  EXPECT_EQ(d("portier_doveadm_commands_total{result=\"tempfail\"}"), 0);
}

// The whole exposition passes promtool's parser and linter (names, _total,
// HELP/TYPE, histogram shape). promtool comes with Debian's `prometheus`.
TEST(Metrics, PromtoolAcceptsTheExposition) {
  {
    auto& c = Counters::local();
    auto& l = c.slot("ptest-login", "[::1]:143");
    login::ProxyFailure f{login::FailureType::Protocol, "x", {}};
    c.count(l, login::events::ProxyFailed{&f, true}, "capability+login/banner");
    Counters::login_duration(l, std::chrono::microseconds(1));
    Counters::passdb_request(c.passdb("ptest-db"), 0, std::chrono::microseconds(1));
  }
  const std::string text = metrics::render();
  auto r = promtool_check(text);
  ASSERT_NE(r.rc, 127) << "promtool is missing: scripts/install-deps.sh installs Debian's prometheus";
  EXPECT_EQ(r.rc, 0) << r.output << "\n---\n" << text;
  EXPECT_EQ(r.output, "") << text;
  // And it notices a broken exposition (the check is real).
  auto bad = promtool_check(text + "portier_oops{ 1\n");
  EXPECT_NE(bad.rc, 0);
}
