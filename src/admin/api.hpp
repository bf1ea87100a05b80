#pragma once
// The admin commands, in the shapes of Dovecot's doveadm HTTP API:
//   request  [["proxyList", {}, "tag1"], ["stats", {}, "tag2"]]
//   response [["doveadmResponse", [{...}, ...], "tag1"], ...]
//   error    ["error", {"type": "exitCode", "exitCode": 64, "message": "..."}, "tag"]
// Commands: proxyList (alias who), proxyKick (alias kick), reload,
// authCacheFlush, stats; anything else goes to Hooks::forward when set.
// As doveadm does, every value in a response row is a string.
//
// Runs on the admin thread. The engine's work (listing, kicking) runs on
// each worker through Engine, whose callbacks may complete on any thread.
//
// Owns: command parsing, filters, response rows. Uses: login::SessionRow,
// config::Cidr, nlohmann/json.

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/config.hpp"
#include "login/session.hpp"
#include "net/awaitable.hpp"

namespace portier::admin {

struct ReloadResult {
  bool ok = false;
  std::vector<std::string> errors;
};

/// What the app plugs in; an empty function = the feature is absent.
struct Hooks {
  /// GET /metrics body (Prometheus text format 0.0.4).
  std::function<std::string()> metrics;
  /// authCacheFlush: the users to flush (empty = all); returns how many entries went.
  std::function<size_t(const std::vector<std::string>&)> cache_flush;
  /// Unknown commands (e.g. per-user forwarding to backends): `cmd` is the
  /// whole ["name", {params}, "tag"] entry; `done` gets the response entry.
  std::function<void(nlohmann::json cmd, std::function<void(nlohmann::json)> done)> forward;
  /// The same reload as SIGHUP (blocking; runs on the admin thread).
  std::function<ReloadResult()> reload;
};

/// What the commands need of the engine (login::Server in the app).
struct Engine {
  using Rows = std::vector<login::SessionRow>;
  using Match = std::function<bool(const login::SessionRow&)>;
  std::function<void(std::function<void(Rows)>)> list;
  std::function<void(Match, std::chrono::milliseconds, std::function<void(size_t)>)> kick;
};

/// Session selection shared by proxyList and proxyKick.
struct Filter {
  std::vector<std::string> users;  // masks with * and ?; any matches
  std::vector<std::string> hosts;  // backend IP or host name; any matches
  std::optional<config::Cidr> net; // client network
  bool empty() const { return users.empty() && hosts.empty() && !net; }
  bool matches(const login::SessionRow& r) const;
};

/// `*`/`?` wildcard match (user masks, as doveadm who/kick).
bool mask_match(std::string_view mask, std::string_view s);
/// "10s", "500ms", "2m", or a number of seconds; nullopt when invalid.
std::optional<std::chrono::milliseconds> parse_delay(const nlohmann::json& v);
/// One row of proxyList.
nlohmann::json row_json(const login::SessionRow& r);

class Api {
 public:
  Api(Engine engine, Hooks hooks);

  /// Run a parsed request body (an array of commands). Fills `status` with
  /// 400 when the body is not in the API's shape (the reply then explains).
  net::Task<nlohmann::json> run(const nlohmann::json& body, int& status);
  /// The GET /metrics body.
  std::string metrics() const;

 private:
  net::Task<nlohmann::json> command(const nlohmann::json& cmd);
  net::Task<Engine::Rows> rows();

  Engine engine_;
  Hooks hooks_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

/// ["error", {"type": type, "exitCode": code, "message": msg}, tag]
nlohmann::json error_reply(std::string_view type, int exit_code, std::string_view message,
                           const nlohmann::json& tag);

}  // namespace portier::admin
