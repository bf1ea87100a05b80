#include "admin/api.hpp"

#include <asio/async_result.hpp>
#include <asio/post.hpp>
#include <asio/this_coro.hpp>

#include <ctime>
#include <map>

#include <fmt/format.h>

#include "login/counters.hpp"

namespace portier::admin {

using nlohmann::json;

namespace {

constexpr auto kMaxDelay = std::chrono::hours(1);

/// Await a callback-style operation whose callback may run on any thread:
/// the result is posted back to this coroutine's executor.
template <typename T, typename Start>
net::Task<T> await_callback(Start start) {
  auto ex = co_await asio::this_coro::executor;
  co_return co_await asio::async_initiate<decltype(asio::use_awaitable), void(T)>(
      [ex, &start](auto handler) {
        auto h = std::make_shared<decltype(handler)>(std::move(handler));
        start([h, ex](T v) {
          asio::post(ex, [h, v = std::move(v)]() mutable { (*h)(std::move(v)); });
        });
      },
      asio::use_awaitable);
}

std::string iso_time(std::chrono::system_clock::time_point t) {
  std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

/// A string or an array of strings → list; false when neither.
bool string_list(const json& v, std::vector<std::string>& out) {
  if (v.is_string()) {
    out.push_back(v.get<std::string>());
    return true;
  }
  if (!v.is_array()) return false;
  for (const auto& e : v) {
    if (!e.is_string()) return false;
    out.push_back(e.get<std::string>());
  }
  return true;
}

/// The filter from a command's parameters; an error message on bad input.
std::optional<std::string> parse_filter(const json& p, Filter& f) {
  for (const char* k : {"user", "mask", "users"})
    if (p.contains(k) && !string_list(p[k], f.users))
      return std::string(k) + ": a string or an array of strings";
  for (const char* k : {"host", "destIp", "dest-ip"})
    if (p.contains(k) && !string_list(p[k], f.hosts))
      return std::string(k) + ": a string or an array of strings";
  for (const char* k : {"ip", "net", "srcIp", "src-ip"}) {
    if (!p.contains(k)) continue;
    if (!p[k].is_string()) return std::string(k) + ": a string (IP or CIDR)";
    f.net = config::parse_cidr(p[k].get<std::string>());
    if (!f.net) return std::string(k) + ": not an IP address or network";
  }
  return std::nullopt;
}

json counted(size_t n) { return json::array({json{{"count", std::to_string(n)}}}); }

}  // namespace

bool mask_match(std::string_view mask, std::string_view s) {
  // Iterative glob with backtracking to the last '*'.
  size_t m = 0, i = 0, star = std::string_view::npos, mark = 0;
  while (i < s.size()) {
    if (m < mask.size() && (mask[m] == '?' || mask[m] == s[i])) {
      ++m;
      ++i;
    } else if (m < mask.size() && mask[m] == '*') {
      star = m++;
      mark = i;
    } else if (star != std::string_view::npos) {
      m = star + 1;
      i = ++mark;
    } else {
      return false;
    }
  }
  while (m < mask.size() && mask[m] == '*') ++m;
  return m == mask.size();
}

bool Filter::matches(const login::SessionRow& r) const {
  if (!users.empty()) {
    if (r.user.empty()) return false;
    bool any = false;
    for (const auto& u : users) any = any || mask_match(u, r.user);
    if (!any) return false;
  }
  if (!hosts.empty()) {
    if (r.dest.empty()) return false;
    // "host[ip]:port": the name before '[' counts too.
    std::string_view name = std::string_view(r.dest).substr(0, r.dest.find('['));
    bool any = false;
    for (const auto& h : hosts) any = any || h == r.dest_ip || (name != r.dest && h == name);
    if (!any) return false;
  }
  if (net) {
    asio::error_code ec;
    auto ip = asio::ip::make_address(r.src_ip, ec);
    if (ec || !net->contains(ip)) return false;
  }
  return true;
}

std::optional<std::chrono::milliseconds> parse_delay(const json& v) {
  std::chrono::milliseconds out{};
  if (v.is_number()) {
    double secs = v.get<double>();
    if (!(secs >= 0) || secs > 3600) return std::nullopt;
    out = std::chrono::milliseconds(static_cast<long long>(secs * 1000));
  } else if (v.is_string()) {
    std::string s = v.get<std::string>();
    size_t i = 0;
    unsigned long long n = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9' && n < 100000000) n = n * 10 + unsigned(s[i++] - '0');
    if (i == 0) return std::nullopt;
    std::string_view unit = std::string_view(s).substr(i);
    if (unit == "ms") out = std::chrono::milliseconds(n);
    else if (unit == "s" || unit.empty()) out = std::chrono::seconds(n);
    else if (unit == "m" || unit == "min") out = std::chrono::minutes(n);
    else return std::nullopt;
  } else {
    return std::nullopt;
  }
  if (out > kMaxDelay) return std::nullopt;
  return out;
}

json row_json(const login::SessionRow& r) {
  return json{{"username", r.user},
              {"service", r.protocol},
              {"src-ip", r.src_ip},
              {"src-port", std::to_string(r.src_port)},
              {"dest-ip", r.dest_ip},
              {"dest-port", r.dest_port ? std::to_string(r.dest_port) : std::string()},
              {"dest", r.dest},
              {"state", r.state},
              {"connected-since", iso_time(r.since)},
              {"bytes-in", std::to_string(r.in)},
              {"bytes-out", std::to_string(r.out)},
              {"id", std::to_string(r.id)}};
}

json error_reply(std::string_view type, int exit_code, std::string_view message, const json& tag) {
  return json::array({"error",
                      json{{"type", type}, {"exitCode", exit_code}, {"message", message}}, tag});
}

Api::Api(Engine engine, Hooks hooks) : engine_(std::move(engine)), hooks_(std::move(hooks)) {}

net::Task<Engine::Rows> Api::rows() {
  auto& list = engine_.list;
  co_return co_await await_callback<Engine::Rows>(
      [&list](std::function<void(Engine::Rows)> done) { list(std::move(done)); });
}

net::Task<json> Api::run(const json& body, int& status) {
  status = 200;
  if (!body.is_array() || body.empty()) {
    status = 400;
    co_return json{{"error", "the body must be a non-empty JSON array of commands"}};
  }
  for (const auto& c : body) {
    if (!c.is_array() || c.size() != 3 || !c[0].is_string() || !c[1].is_object() || !c[2].is_string()) {
      status = 400;
      co_return json{{"error", "each command must be [\"name\", {parameters}, \"tag\"]"}};
    }
  }
  json out = json::array();
  for (const auto& c : body) out.push_back(co_await command(c));
  co_return out;
}

net::Task<json> Api::command(const json& cmd) {
  const std::string name = cmd[0].get<std::string>();
  const json& p = cmd[1];
  const json& tag = cmd[2];
  auto ok = [&tag](json rows) { return json::array({"doveadmResponse", std::move(rows), tag}); };
  auto usage = [&tag](std::string_view msg) { return error_reply("exitCode", 64, msg, tag); };

  if (name == "proxyList" || name == "who" || name == "proxy list") {
    Filter f;
    if (auto err = parse_filter(p, f)) co_return usage(*err);
    const bool all = p.value("all", false);
    json rows = json::array();
    for (const auto& r : co_await this->rows())
      if ((all || !r.user.empty()) && f.matches(r)) rows.push_back(row_json(r));
    co_return ok(std::move(rows));
  }
  if (name == "proxyKick" || name == "kick" || name == "proxy kick") {
    Filter f;
    if (auto err = parse_filter(p, f)) co_return usage(*err);
    if (f.empty()) co_return usage("kick needs a user, host or ip");
    std::chrono::milliseconds delay{0};
    if (p.contains("delay")) {
      auto d = parse_delay(p["delay"]);
      if (!d) co_return usage("delay: seconds, or \"10s\"/\"500ms\"/\"2m\", at most 1 hour");
      delay = *d;
    }
    auto& kick = engine_.kick;
    auto match = [f](const login::SessionRow& r) { return f.matches(r); };
    size_t n = co_await await_callback<size_t>(
        [&kick, &match, delay](std::function<void(size_t)> done) { kick(match, delay, std::move(done)); });
    co_return ok(counted(n));
  }
  if (name == "reload") {
    if (!hooks_.reload) co_return error_reply("exitCode", 69, "reload is not available", tag);
    ReloadResult r = hooks_.reload();
    if (!r.ok) {
      auto e = error_reply("exitCode", 78, "config reload failed, keeping the old config", tag);
      e[1]["errors"] = r.errors;
      co_return e;
    }
    co_return ok(json::array({json{{"result", "reloaded"}}}));
  }
  if (name == "authCacheFlush" || name == "auth cache flush") {
    if (!hooks_.cache_flush) co_return error_reply("exitCode", 69, "no auth cache is configured", tag);
    std::vector<std::string> users;
    if (p.contains("user") && !string_list(p["user"], users))
      co_return usage("user: a string or an array of strings");
    co_return ok(counted(hooks_.cache_flush(users)));
  }
  if (name == "stats") {
    auto rows = co_await this->rows();
    std::map<std::string, size_t> by_protocol;
    size_t relaying = 0, logging_in = 0, prelogin = 0;
    for (const auto& r : rows) {
      ++by_protocol[r.protocol];
      if (r.state == "relaying") ++relaying;
      else if (r.state == "prelogin") ++prelogin;
      else ++logging_in;
    }
    json s{{"sessions", std::to_string(rows.size())},
           {"relaying", std::to_string(relaying)},
           {"logging-in", std::to_string(logging_in)},
           {"prelogin", std::to_string(prelogin)},
           {"uptime-secs", std::to_string(std::chrono::duration_cast<std::chrono::seconds>(
                                              std::chrono::steady_clock::now() - start_)
                                              .count())}};
    for (const auto& [proto, n] : by_protocol) s["sessions-" + proto] = std::to_string(n);
    co_return ok(json::array({std::move(s)}));
  }
  if (hooks_.forward) {
    auto& fwd = hooks_.forward;
    co_return co_await await_callback<json>(
        [&fwd, &cmd](std::function<void(json)> done) { fwd(cmd, std::move(done)); });
  }
  auto e = error_reply("unknownMethod", 64, "unknown command", tag);
  co_return e;
}

std::string Api::metrics() const {
  if (hooks_.metrics) return hooks_.metrics();
  // A minimal exposition of the engine's counters until the metrics module
  // provides the full set.
  std::string out;
  auto sums = login::Counters::sum();
  auto family = [&](std::string_view name, std::string_view help, auto field) {
    out += fmt::format("# HELP portier_{} {}\n# TYPE portier_{} counter\n", name, help, name);
    for (const auto& [service, c] : sums)
      out += fmt::format("portier_{}{{service=\"{}\"}} {}\n", name, service, c.*field);
  };
  family("logins_total", "Logins that reached the relay.", &login::ServiceCounters::logins);
  family("auth_failures_total", "Failed local authentications.", &login::ServiceCounters::auth_failed);
  family("connections_refused_total", "Connections refused by limits.",
         &login::ServiceCounters::connections_refused);
  family("relayed_bytes_in_total", "Bytes relayed from clients to backends.",
         &login::ServiceCounters::bytes_in);
  family("relayed_bytes_out_total", "Bytes relayed from backends to clients.",
         &login::ServiceCounters::bytes_out);
  return out;
}

}  // namespace portier::admin
