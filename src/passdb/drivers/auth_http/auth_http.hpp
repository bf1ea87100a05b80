#pragma once
// nginx-compatible `auth_http` passdb driver (registry name "auth_http", log
// name "auth_http"): asks an HTTP service written for nginx's mail proxy
// (`auth_http` directive) who the user is and where to proxy them.
//
// Owns: the driver's [[passdb]] keys (url, headers, timeout,
// protocol_managesieve), the request exactly as nginx writes it (HTTP/1.0
// GET, nginx's header set and order, nginx's %XX escaping of Auth-User and
// Auth-Pass), the response parser (nginx's rules: status line ignored, header
// names [A-Za-z0-9-], 1 KiB limit, body ignored) and the decision
// (Auth-Status OK / WAIT / failure text, Auth-Server/Auth-Port/Auth-User/
// Auth-Pass/Auth-Wait), and the asynchronous HTTP exchange on the worker's
// event loop (Asio TCP or unix socket, one connection per request, per-request
// timeout). Facts: ../shared/spec/ops-reference.md §1, §10.1; docs/PASSDB.md.
// May use: passdb.hpp, reply.hpp, config, core, net/awaitable.hpp, asio.
//
// Mapping to a passdb answer:
//   Auth-Status: OK + Auth-Server (IP literal) + Auth-Port (1-65535)
//       -> Result::Ok (the service authenticated the user; no local password
//          check) with fields `proxy host=<ip> port=<n>` [+ `destuser=` from
//          Auth-User, `pass=` from Auth-Pass], between the passdb's
//          default_fields and override_fields.
//   Auth-Status: <other text> -> Result::Mismatch with `reason=<text>` (the
//          client sees the text); Auth-Wait: N delays the answer by N s
//          (capped at kMaxAuthWait) on this worker's timer.
//   Auth-Status: WAIT -> ask again after Auth-Wait s, at most kMaxWaitRetries
//          times, then TempFail.
//   connect/send/read error, timeout, invalid or over-long response, OK
//   without a usable server or port -> Result::TempFail.

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config/config.hpp"
#include "core/result.hpp"
#include "passdb/passdb.hpp"

namespace portier::passdb::auth_http {

/// nginx reads the response into a 1 KiB buffer: a header block that does
/// not fit is an invalid response there, and here.
inline constexpr size_t kMaxResponse = 1024;
/// nginx's auth_http_timeout default.
inline constexpr std::chrono::milliseconds kDefaultTimeout{60'000};
/// Longest Auth-Wait honoured (nginx has no cap); larger values are clamped.
inline constexpr std::chrono::seconds kMaxAuthWait{30};
/// `Auth-Status: WAIT` re-queries before giving up with a temporary failure.
inline constexpr int kMaxWaitRetries = 5;

/// Where the service listens, as parsed from `url`.
struct Url {
  bool unix_socket = false;
  std::string path;         ///< unix socket path (unix_socket)
  std::string host;         ///< URL host (the Host header); "localhost" for unix sockets
  uint16_t port = 80;
  std::string uri = "/";    ///< request target
};

/// Parses nginx's auth_http URL forms: `[http://]host[:port][/uri]`
/// (host an IP literal, `[v6]`, or a name), `unix:/path[:/uri]`.
/// nullopt with `error` set when malformed.
core::Result<Url> parse_url(std::string_view text);

/// auth_http's own [[passdb]] keys.
struct Settings final : config::PassdbSettings {
  std::string url_text;
  Url url;
  /// Extra request headers (`headers = { "X-Auth-Key" = "..." }`), sent
  /// verbatim after nginx's own, in file order. Values are never logged.
  std::vector<std::pair<std::string, std::string>> headers;
  std::chrono::milliseconds timeout = kDefaultTimeout;
  /// Auth-Protocol sent for ManageSieve logins (nginx has no value for it).
  std::string protocol_managesieve = "managesieve";
  std::string describe() const override { return url_text; }
};

/// The driver's config parser (registry).
std::shared_ptr<const config::PassdbSettings> parse_settings(config::PassdbSection& section);

/// nginx's escaping of Auth-User / Auth-Pass: space, '%' and bytes
/// 0x00-0x1F become %XX (upper-case hex); everything else is sent raw.
std::string escape(std::string_view s);

/// The Auth-Protocol value for a portier protocol name.
std::string_view auth_protocol(std::string_view protocol, const Settings& s);

/// The full request text (request line, headers in nginx's order, blank
/// line) for one attempt. Contains the password: callers wipe it.
std::string build_request(const Request& req, const Settings& s);

/// A parsed response header block.
struct Response {
  enum class State { Incomplete, Invalid, Complete };
  State state = State::Incomplete;
  std::string error;  ///< why Invalid (no header values in it)
  /// Headers by lower-cased name; a repeated header keeps the last value.
  std::map<std::string, std::string> headers;
  std::optional<std::string_view> get(std::string_view lower_name) const;
};

/// Parses the bytes received so far. Incomplete: the blank line that ends
/// the header block has not arrived yet (and `data` is under kMaxResponse).
Response parse_response(std::string_view data);

/// What a complete response means.
struct Decision {
  enum class Kind { Ok, Fail, Wait, Error };
  Kind kind = Kind::Error;
  std::string server;                  ///< Ok: backend IP
  uint16_t port = 0;                   ///< Ok: backend port
  std::optional<std::string> user;     ///< Ok: Auth-User (backend login name)
  std::optional<std::string> pass;     ///< Ok: Auth-Pass (backend password)
  std::string text;                    ///< Fail: the Auth-Status text
  std::string error_code;              ///< Fail: a valid Auth-Error-Code ("451 4.3.0"), else ""
  std::chrono::seconds wait{0};        ///< Fail / Wait: Auth-Wait (clamped)
  std::string error;                   ///< Error: reason for the log
};

/// nginx's decision on a Complete response.
Decision decide(const Response& r);

/// The auth_http passdb.
class AuthHttp final : public Passdb {
 public:
  explicit AuthHttp(config::Passdb cfg);
  /// lookup_only requests (a chain after a verified password) cannot be
  /// answered by an auth_http service: nginx has no such request.
  net::Task<Lookup> lookup(const Request& req) override;

  const Settings& settings() const { return *settings_; }
  /// The Lookup for a final decision (unit tests).
  Lookup answer_for_test(const Request& req, Decision& d) const { return answer(req, d); }

 private:
  /// The passdb answer for a final decision (not Wait).
  Lookup answer(const Request& req, Decision& d) const;
  config::Passdb cfg_;
  std::shared_ptr<const Settings> settings_;
  std::vector<std::pair<std::string, std::string>> default_fields_;
  std::vector<std::pair<std::string, std::string>> override_fields_;
};

/// Creates the passdb from a validated [[passdb]] entry; null with `error`
/// set when the settings are unusable.
core::Result<std::shared_ptr<Passdb>> make(const config::Passdb& cfg);

}  // namespace portier::passdb::auth_http
