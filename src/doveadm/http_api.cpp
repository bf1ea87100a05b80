// The doveadm HTTP API side of the doveadm proxy (Service::http_command):
// one command, routed by the passdb, forwarded to the backend's
// POST /doveadm/v1 with X-Dovecot-API, the response element passed back.

#include <asio/write.hpp>

#include <charconv>
#include <string>

#include "core/base64.hpp"
#include "core/secret.hpp"
#include "doveadm/protocol.hpp"
#include "doveadm/route.hpp"
#include "log/log.hpp"
#include "net/socket.hpp"

namespace portier::doveadm {

using asio::ip::tcp;
using nlohmann::json;

namespace {

constexpr size_t kMaxResponse = 16 * 1024 * 1024;

json error_element(int exit_code, std::string_view message, const json& tag) {
  return json::array({"error", {{"type", "exitCode"}, {"exitCode", exit_code}, {"message", message}}, tag});
}

/// Decodes a chunked body; false when malformed.
bool dechunk(std::string_view in, std::string& out) {
  for (;;) {
    size_t eol = in.find("\r\n");
    if (eol == std::string_view::npos) return false;
    size_t n = 0;
    std::string_view hex = in.substr(0, eol);
    if (size_t semi = hex.find(';'); semi != std::string_view::npos) hex = hex.substr(0, semi);
    auto [p, ec] = std::from_chars(hex.data(), hex.data() + hex.size(), n, 16);
    if (ec != std::errc() || hex.empty()) return false;
    in.remove_prefix(eol + 2);
    if (n == 0) return true;
    if (in.size() < n + 2) return false;
    out.append(in.substr(0, n));
    in.remove_prefix(n + 2);
  }
}

struct HttpReply {
  int status = 0;
  std::string body;
  std::string error;  ///< set when the response could not be read or parsed
  bool complete = false;  ///< the whole response is here (the body's length is known and met)
};

/// Splits an HTTP/1.1 response read so far; `eof`: nothing more will come.
HttpReply parse_http(std::string_view raw, bool eof) {
  HttpReply r;
  size_t head_end = raw.find("\r\n\r\n");
  if (head_end == std::string_view::npos && !eof) return r;
  if (raw.substr(0, 5) != "HTTP/" || head_end == std::string_view::npos || raw.size() < 12) {
    r.error = "not an HTTP response";
    return r;
  }
  std::string_view code = raw.substr(9, 3);
  auto [p, ec] = std::from_chars(code.data(), code.data() + 3, r.status);
  if (ec != std::errc()) {
    r.error = "bad HTTP status line";
    return r;
  }
  std::string head(raw.substr(0, head_end));
  for (auto& ch : head) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  std::string_view body = raw.substr(head_end + 4);
  r.complete = true;
  if (head.find("\r\ntransfer-encoding: chunked") != std::string::npos) {
    if (!dechunk(body, r.body)) {
      r.complete = false;
      if (eof) r.error = "bad chunked body";
    }
  } else if (size_t cl = head.find("\r\ncontent-length:"); cl != std::string::npos) {
    size_t n = std::strtoul(head.c_str() + cl + 17, nullptr, 10);
    if (body.size() < n) {
      r.complete = false;
      if (eof) r.error = "short body";
    } else {
      r.body.assign(body.substr(0, n));
    }
  } else {
    r.complete = eof;  // the body ends with the connection
    r.body.assign(body);
  }
  return r;
}

}  // namespace

net::Task<json> http_forward(std::shared_ptr<const login::Snapshot> snap, json cmd) {
  const auto& cfg = snap->cfg.doveadm;
  json tag = cmd.is_array() && cmd.size() == 3 ? cmd[2] : json("");
  if (!cmd.is_array() || cmd.size() != 3 || !cmd[0].is_string() || !cmd[1].is_object()) {
    co_return error_element(64, "expected [\"command\", {parameters}, \"tag\"]", tag);
  }
  const std::string name = cmd[0].get<std::string>();
  auto uit = cmd[1].find("user");
  if (uit == cmd[1].end() || !uit->is_string() || uit->get<std::string>().empty()) {
    co_return error_element(64, "only per-user commands are proxied (give \"user\")", tag);
  }
  const std::string user = uit->get<std::string>();
  const std::string who = fmt::format("http({}): {}", log::sanitize(user, 128), log::sanitize(name, 64));
  auto fail = [&](int code, const std::string& why) {
    log::logf(log::Level::Error, "doveadm", "{}: {}", who, why);
    return error_element(code, "portier: " + why, tag);
  };
  const std::string no_ip;
  Route r = co_await route(*snap, user, no_ip);
  if (!r.code.empty()) co_return fail(exit_code("-" + r.code), r.why);
  if (cfg.backend_api_key.empty()) co_return fail(75, "no [doveadm] backend_api_key configured");
  const std::string dest = fmt::format("{}:{}", r.host, cfg.http_port);
  asio::error_code ec;
  auto addr = asio::ip::make_address(r.host, ec);
  if (ec) co_return fail(75, "invalid backend address " + log::sanitize(r.host, 64));
  cmd[1]["user"] = r.destuser;
  const std::string body = json::array({cmd}).dump();
  core::Secret request;
  {
    std::string key64 = core::base64_encode(cfg.backend_api_key);
    core::Secret wipe = core::Secret::take(key64);
    request.append(fmt::format("POST /doveadm/v1 HTTP/1.1\r\nHost: {}\r\nAuthorization: X-Dovecot-API ", dest));
    request.append(wipe.view());
    // No "Connection: close": Dovecot 2.3's doveadm HTTP server then never
    // answers a wrong key's 401. The reply's length ends the exchange.
    request.append(fmt::format("\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                               body.size()));
    request.append(body);
  }
  auto ex = co_await asio::this_coro::executor;
  tcp::endpoint ep(addr, cfg.http_port);
  tcp::socket sock = net::open_socket(ex, ep.protocol(), ec);
  if (ec) co_return fail(75, "socket(): " + ec.message());
  Deadline deadline(ex);
  deadline.watch(&sock);
  deadline.arm(cfg.timeout);
  ec = co_await net::connect(sock, ep);
  deadline.disarm();
  if (ec) co_return fail(75, fmt::format("connect({}) failed: {}", dest, deadline.expired() ? "timed out" : ec.message()));
  deadline.arm(cfg.timeout);
  auto [wec, wn] = co_await asio::async_write(sock, asio::buffer(request.view().data(), request.size()), net::use_nothrow);
  deadline.disarm();
  request.clear();
  (void)wn;
  if (wec) co_return fail(75, fmt::format("{}: write failed: {}", dest, wec.message()));
  std::string raw;
  std::array<char, 16384> chunk{};
  HttpReply hr;
  for (;;) {
    deadline.arm(cfg.timeout);
    auto [rec, n] = co_await sock.async_read_some(asio::buffer(chunk), net::use_nothrow);
    deadline.disarm();
    const bool eof = rec == asio::error::eof;
    if (rec && !eof)
      co_return fail(75, fmt::format("{}: {}", dest, deadline.expired() ? std::string("timed out") : rec.message()));
    raw.append(chunk.data(), n);
    if (raw.size() > kMaxResponse) co_return fail(75, dest + ": response larger than 16 MiB");
    hr = parse_http(raw, eof);
    if (hr.complete || !hr.error.empty() || eof) break;
  }
  if (!hr.error.empty()) co_return fail(75, dest + ": " + hr.error);
  if (hr.status == 401 || hr.status == 403)
    co_return fail(75, fmt::format("{}: the backend refused portier's API key (HTTP {})", dest, hr.status));
  if (hr.status != 200) co_return fail(75, fmt::format("{}: HTTP status {}", dest, hr.status));
  json resp = json::parse(hr.body, nullptr, false);
  if (resp.is_discarded() || !resp.is_array() || resp.empty())
    co_return fail(75, dest + ": the backend's response is not a JSON array");
  log::logf(log::Level::Info, "doveadm", "{}: {}: {}", who, dest,
            resp[0].is_array() && !resp[0].empty() && resp[0][0].is_string() ? resp[0][0].get<std::string>() : "?");
  co_return resp[0];
}

}  // namespace portier::doveadm
