#include "passdb/drivers/auth_http/auth_http.hpp"

#include <asio/connect.hpp>
#include <asio/ip/address.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/local/stream_protocol.hpp>
#include <asio/read.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/write.hpp>

#include <array>
#include <charconv>

#include "core/secret.hpp"
#include "core/secure.hpp"
#include "core/strings.hpp"

namespace portier::passdb::auth_http {

namespace {

constexpr std::string_view kName = "auth_http";

bool header_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
}

bool has_ctl(std::string_view s) {
  for (char c : s)
    if (c == '\r' || c == '\n' || c == '\0') return true;
  return false;
}

std::optional<uint16_t> parse_port(std::string_view s) {
  auto v = core::parse_uint(s);
  if (!v || *v < 1 || *v > 65535) return std::nullopt;
  return static_cast<uint16_t>(*v);
}

}  // namespace

// ------------------------------------------------------------------ config

core::Result<Url> parse_url(std::string_view text) {
  Url u;
  if (text.substr(0, 5) == "unix:") {
    std::string_view rest = text.substr(5);
    // nginx: the URI follows the socket path after a ':'.
    size_t colon = rest.find(':');
    u.path = std::string(rest.substr(0, colon));
    if (colon != std::string_view::npos) u.uri = std::string(rest.substr(colon + 1));
    if (u.path.empty() || u.path.front() != '/') {
      return core::fail("unix socket path must be absolute (unix:/path[:/uri])");
    }
    if (u.uri.empty()) u.uri = "/";
    u.unix_socket = true;
    u.host = "localhost";
    u.port = 0;
  } else {
    std::string_view rest = text;
    if (core::istarts_with(rest, "http://")) rest.remove_prefix(7);
    else if (rest.find("://") != std::string_view::npos) {
      return core::fail("only http:// and unix: URLs are supported");
    }
    size_t slash = rest.find('/');
    std::string_view hostport = rest.substr(0, slash);
    if (slash != std::string_view::npos) u.uri = std::string(rest.substr(slash));
    std::string_view host = hostport, port;
    if (!hostport.empty() && hostport.front() == '[') {
      size_t close = hostport.find(']');
      if (close == std::string_view::npos) {
        return core::fail("unterminated [IPv6] address");
      }
      host = hostport.substr(0, close + 1);
      std::string_view after = hostport.substr(close + 1);
      if (!after.empty()) {
        if (after.front() != ':') {
          return core::fail("junk after [IPv6] address");
        }
        port = after.substr(1);
      }
    } else if (size_t c = hostport.rfind(':'); c != std::string_view::npos) {
      host = hostport.substr(0, c);
      port = hostport.substr(c + 1);
    }
    if (host.empty()) {
      return core::fail("no host");
    }
    if (!port.empty() || hostport.find(':') != std::string_view::npos) {
      auto p = parse_port(port);
      if (!p) {
        return core::fail("invalid port '" + std::string(port) + "'");
      }
      u.port = *p;
    }
    u.host = std::string(host);
  }
  if (has_ctl(u.uri) || u.uri.find(' ') != std::string::npos || has_ctl(u.host) || has_ctl(u.path)) {
    return core::fail("control characters or spaces in the URL");
  }
  return u;
}

std::shared_ptr<const config::PassdbSettings> parse_settings(config::PassdbSection& section) {
  auto s = std::make_shared<Settings>();
  bool ok = true;
  if (!section.has("url")) {
    section.error("url", "passdb: missing required key 'url'");
    return nullptr;
  }
  auto url = section.string("url");
  if (!url) return nullptr;
  auto u = parse_url(*url);
  if (!u) {
    section.error("url", "passdb.url: " + u.error().message);
    ok = false;
  } else {
    s->url = std::move(*u);
    s->url_text = *url;
  }
  if (section.has("headers")) {
    auto h = section.string_table("headers");
    if (!h) return nullptr;
    for (const auto& [k, v] : *h) {
      bool name_ok = !k.empty();
      for (char c : k) name_ok = name_ok && header_name_char(c);
      if (!name_ok) {
        section.error("headers", "passdb.headers: invalid header name '" + k + "'");
        ok = false;
      } else if (has_ctl(v)) {
        // The value itself is a secret (an API key): not repeated here.
        section.error("headers", "passdb.headers: value of '" + k + "' contains CR, LF or NUL");
        ok = false;
      }
    }
    s->headers = std::move(*h);
  }
  if (section.has("timeout")) {
    auto t = section.duration("timeout");
    if (!t) return nullptr;
    if (t->count() <= 0) {
      section.error("timeout", "passdb.timeout: must be positive");
      ok = false;
    }
    s->timeout = *t;
  }
  if (section.has("protocol_managesieve")) {
    auto p = section.string("protocol_managesieve");
    if (!p) return nullptr;
    if (p->empty() || has_ctl(*p) || p->find(' ') != std::string::npos) {
      section.error("protocol_managesieve", "passdb.protocol_managesieve: must be one non-empty word");
      ok = false;
    }
    s->protocol_managesieve = *p;
  }
  if (!ok) return nullptr;
  return s;
}

// ----------------------------------------------------------------- request

std::string escape(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size() * 3);  // never reallocates: no stray copies of a password
  for (unsigned char c : s) {
    if (c <= 0x20 || c == '%') {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 0xF];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

std::string_view auth_protocol(std::string_view protocol, const Settings& s) {
  if (protocol == "submission" || protocol == "smtp") return "smtp";
  if (protocol == "managesieve") return s.protocol_managesieve;
  return protocol;  // imap, pop3
}

namespace {

// nginx's Auth-Method: "plain" for every cleartext-password login (IMAP
// LOGIN, AUTHENTICATE PLAIN/LOGIN, POP3 USER/PASS, SMTP AUTH PLAIN/LOGIN).
std::string auth_method(std::string_view mech) {
  if (mech.empty() || core::iequals(mech, "PLAIN") || core::iequals(mech, "LOGIN") ||
      core::iequals(mech, "USER"))
    return "plain";
  return core::to_lower(mech);
}

void header(std::string& out, std::string_view name, std::string_view value) {
  out += name;
  out += ": ";
  out += value;
  out += "\r\n";
}

}  // namespace

std::string build_request(const Request& req, const Settings& s) {
  std::string out;
  // Reserved up front so the buffer holding the password never reallocates
  // (a reallocation would leave an unwiped copy behind).
  size_t extra = s.url.uri.size() + s.url.host.size() + req.remote_ip.size() + req.tls_protocol.size() +
                 req.tls_cipher.size() + req.mechanism.size() + s.protocol_managesieve.size();
  for (const auto& [k, v] : s.headers) extra += k.size() + v.size() + 4;
  out.reserve(512 + extra + req.user.size() * 3 + req.password.size() * 3);
  out += "GET ";
  out += s.url.uri;
  out += " HTTP/1.0\r\n";
  header(out, "Host", s.url.host);
  header(out, "Auth-Method", auth_method(req.mechanism));
  header(out, "Auth-User", escape(req.user));
  std::string pass = escape(req.password);
  header(out, "Auth-Pass", pass);
  core::secure_zero(pass);
  const std::string_view proto = auth_protocol(req.protocol, s);
  header(out, "Auth-Protocol", proto);
  header(out, "Auth-Login-Attempt", std::to_string(req.login_attempt ? req.login_attempt : 1));
  header(out, "Client-IP", req.remote_ip);
  // nginx's SMTP sessions always carry a Client-Host; portier resolves no
  // names, as nginx without a `resolver`.
  if (proto == "smtp") header(out, "Client-Host", "[UNAVAILABLE]");
  if (req.tls) {
    header(out, "Auth-SSL", "on");
    if (!req.tls_protocol.empty()) header(out, "Auth-SSL-Protocol", req.tls_protocol);
    if (!req.tls_cipher.empty()) header(out, "Auth-SSL-Cipher", req.tls_cipher);
  }
  for (const auto& [k, v] : s.headers) header(out, k, v);
  out += "\r\n";
  return out;
}

// ---------------------------------------------------------------- response

std::optional<std::string_view> Response::get(std::string_view lower_name) const {
  auto it = headers.find(std::string(lower_name));
  if (it == headers.end()) return std::nullopt;
  return std::string_view(it->second);
}

Response parse_response(std::string_view data) {
  Response r;
  auto invalid = [&r](std::string why) {
    r.state = Response::State::Invalid;
    r.headers.clear();
    r.error = std::move(why);
    return r;
  };
  std::string_view rest = data;
  // nginx skips an "HTTP/..." status line whatever its code; a response
  // without one is read as headers from the first byte.
  if (rest.substr(0, 5) == "HTTP/") {
    size_t nl = rest.find('\n');
    if (nl == std::string_view::npos) {
      if (data.size() >= kMaxResponse) return invalid("response too long");
      return r;
    }
    rest.remove_prefix(nl + 1);
  }
  for (;;) {
    size_t nl = rest.find('\n');
    if (nl == std::string_view::npos) {
      if (data.size() >= kMaxResponse) return invalid("response header block longer than 1024 bytes");
      r.headers.clear();
      return r;  // Incomplete
    }
    std::string_view line = rest.substr(0, nl);
    rest.remove_prefix(nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) {
      r.state = Response::State::Complete;
      return r;
    }
    size_t colon = 0;
    while (colon < line.size() && header_name_char(line[colon])) ++colon;
    if (colon == 0 || colon == line.size() || line[colon] != ':')
      return invalid("invalid header in response");
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    while (!value.empty() && value.back() == ' ') value.remove_suffix(1);
    if (value.find('\0') != std::string_view::npos || value.find('\r') != std::string_view::npos)
      return invalid("invalid header in response");
    r.headers[core::to_lower(line.substr(0, colon))] = std::string(value);
  }
}

Decision decide(const Response& r) {
  Decision d;
  auto wait_of = [&r]() {
    auto w = r.get("auth-wait");
    if (!w) return std::chrono::seconds(0);
    auto n = core::parse_uint(*w);
    if (!n) return std::chrono::seconds(0);  // nginx ignores a bad Auth-Wait
    return std::chrono::seconds(std::min<unsigned long long>(*n, kMaxAuthWait.count()));
  };
  auto status = r.get("auth-status");
  if (!status) {
    d.error = "auth_http service sent no Auth-Status";
    return d;
  }
  if (*status == "WAIT") {
    d.kind = Decision::Kind::Wait;
    d.wait = wait_of();
    return d;
  }
  if (*status != "OK") {
    d.kind = Decision::Kind::Fail;
    d.text = std::string(*status);
    d.wait = wait_of();
    // nginx's SMTP reply code for the failure, e.g. "451 4.3.0" (4xx/5xx only).
    if (auto code = r.get("auth-error-code"); code && code->size() >= 9) {
      const std::string_view c = *code;
      const bool ok = (c[0] == '4' || c[0] == '5') && c.find_first_not_of("0123456789. ") == std::string_view::npos &&
                      c[3] == ' ' && c[4] == c[0] && c[5] == '.';
      if (ok) d.error_code = std::string(c);
    }
    return d;
  }
  auto server = r.get("auth-server");
  auto port = r.get("auth-port");
  if (!server || !port) {
    d.error = "auth_http service did not send server or port";
    return d;
  }
  asio::error_code ec;
  auto addr = asio::ip::make_address(std::string(*server), ec);
  if (ec) {
    d.error = "auth_http service sent invalid server address: \"" + std::string(*server) + "\"";
    return d;
  }
  auto p = parse_port(*port);
  if (!p) {
    d.error = "auth_http service sent invalid server port: \"" + std::string(*port) + "\"";
    return d;
  }
  d.kind = Decision::Kind::Ok;
  d.server = addr.to_string();
  d.port = *p;
  if (auto u = r.get("auth-user")) d.user = std::string(*u);
  if (auto pw = r.get("auth-pass")) d.pass = std::string(*pw);
  return d;
}

// ---------------------------------------------------------------- exchange

namespace {

/// One HTTP exchange's socket and timer, shared with the timer's handler so
/// that a late timer completion never touches a dead coroutine frame.
template <class Socket>
struct Conn {
  explicit Conn(const asio::any_io_executor& ex) : sock(ex), timer(ex) {}
  Socket sock;
  asio::steady_timer timer;
  bool timed_out = false;
};

struct Exchange {
  std::string error;     ///< transport error ("" = response complete or invalid)
  std::string response;  ///< bytes received (wiped by the caller)
};

template <class Socket>
net::Task<void> talk(std::shared_ptr<Conn<Socket>> c, typename Socket::endpoint_type ep,
                     std::string_view request, Exchange& out) {
  auto [cec] = co_await c->sock.async_connect(ep, net::use_nothrow);
  if (cec) {
    out.error = "connect() failed: " + cec.message();
    co_return;
  }
  auto wbuf = asio::buffer(request);
  auto [wec, wn] = co_await asio::async_write(c->sock, wbuf, net::use_nothrow);
  (void)wn;
  if (wec) {
    out.error = "send() failed: " + wec.message();
    co_return;
  }
  std::array<char, kMaxResponse> buf;
  size_t have = 0;
  for (;;) {
    auto rbuf = asio::buffer(buf.data() + have, buf.size() - have);
    auto [rec, n] = co_await c->sock.async_read_some(rbuf, net::use_nothrow);
    have += n;
    if (n > 0) {
      auto st = parse_response(std::string_view(buf.data(), have)).state;
      if (st != Response::State::Incomplete) break;
    }
    if (rec) {
      out.error = rec == asio::error::eof ? "closed the connection before the end of the response header"
                                          : "recv() failed: " + rec.message();
      break;
    }
  }
  out.response.assign(buf.data(), have);
  core::secure_zero(buf.data(), buf.size());
}

template <class Socket>
net::Task<Exchange> exchange(typename Socket::endpoint_type ep, std::string_view request,
                             std::chrono::milliseconds timeout) {
  auto ex = co_await asio::this_coro::executor;
  auto c = std::make_shared<Conn<Socket>>(ex);
  c->timer.expires_after(timeout);
  c->timer.async_wait([c](const asio::error_code& ec) {
    if (ec) return;
    c->timed_out = true;
    asio::error_code ignored;
    c->sock.close(ignored);
  });
  Exchange out;
  co_await talk<Socket>(c, ep, request, out);
  c->timer.cancel();
  if (c->timed_out) out.error = "timed out";
  asio::error_code ignored;
  c->sock.close(ignored);
  co_return out;
}

net::Task<Exchange> ask(const Settings& s, std::string_view request) {
  if (s.url.unix_socket) {
    using Local = asio::local::stream_protocol;
    const Local::endpoint ep(s.url.path);  // named: GCC 12 and temporaries in co_await
    co_return co_await exchange<Local::socket>(ep, request, s.timeout);
  }
  using Tcp = asio::ip::tcp;
  asio::error_code ec;
  auto addr = asio::ip::make_address(s.url.host.front() == '['
                                         ? s.url.host.substr(1, s.url.host.size() - 2)
                                         : s.url.host,
                                     ec);
  if (ec) {
    // A host name: resolved per request (Asio's resolver thread, not this loop).
    // Bounded by `timeout` too: the timer's handler shares the resolver.
    auto ex = co_await asio::this_coro::executor;
    auto rs = std::make_shared<std::pair<Tcp::resolver, asio::steady_timer>>(ex, ex);
    rs->second.expires_after(s.timeout);
    rs->second.async_wait([rs](const asio::error_code& e) {
      if (!e) rs->first.cancel();
    });
    const std::string port = std::to_string(s.url.port);
    auto [rec, results] = co_await rs->first.async_resolve(s.url.host, port, net::use_nothrow);
    rs->second.cancel();
    if (rec || results.empty()) {
      Exchange out;
      out.error = "cannot resolve " + s.url.host + ": " + (rec ? rec.message() : "no address");
      co_return out;
    }
    addr = results.begin()->endpoint().address();
  }
  const Tcp::endpoint ep(addr, s.url.port);
  co_return co_await exchange<Tcp::socket>(ep, request, s.timeout);
}

Lookup temp_fail(const Settings& s, std::string why) {
  Lookup l;
  l.result = Result::TempFail;
  l.passdb = kName;
  l.error = "auth_http " + s.url_text + ": " + std::move(why);
  return l;
}

net::Task<void> sleep_for(std::chrono::seconds d) {
  if (d.count() <= 0) co_return;
  auto ex = co_await asio::this_coro::executor;
  asio::steady_timer t(ex);
  t.expires_after(d);
  co_await t.async_wait(net::use_nothrow);
}

}  // namespace

AuthHttp::AuthHttp(config::Passdb cfg)
    : cfg_(std::move(cfg)),
      settings_(std::dynamic_pointer_cast<const Settings>(cfg_.settings)),
      default_fields_(parse_extra_fields(cfg_.default_fields)),
      override_fields_(parse_extra_fields(cfg_.override_fields)) {}

namespace {

// Asks until the answer is not WAIT (bounded). Transport and response errors
// come back as Kind::Error. Both references outlive the call (the caller
// awaits it); the request holds the password, so it stays in a Secret.
net::Task<Decision> consult(const Settings& s, const core::Secret& request) {
  Decision d;
  const std::string_view text = request.view();
  for (int attempt = 0;; ++attempt) {
    Exchange x = co_await ask(s, text);
    if (!x.error.empty()) {
      core::secure_zero(x.response);
      d.kind = Decision::Kind::Error;
      d.error = std::move(x.error);
      co_return d;
    }
    Response r = parse_response(x.response);
    core::secure_zero(x.response);
    if (r.state != Response::State::Complete) {
      d.kind = Decision::Kind::Error;
      d.error = "sent invalid response: " + r.error;
      co_return d;
    }
    d = decide(r);
    for (auto& [k, v] : r.headers) core::secure_zero(v);
    if (d.kind != Decision::Kind::Wait) co_return d;
    if (attempt >= kMaxWaitRetries) {
      d.kind = Decision::Kind::Error;
      d.error = "still WAIT after " + std::to_string(kMaxWaitRetries) + " retries";
      co_return d;
    }
    co_await sleep_for(d.wait);
  }
}

}  // namespace

Lookup AuthHttp::answer(const Request& req, Decision& d) const {
  Lookup l;
  l.passdb = kName;
  l.reply.user = std::string(req.user);
  switch (d.kind) {
    case Decision::Kind::Error:
    case Decision::Kind::Wait:
      return temp_fail(*settings_, d.error);
    case Decision::Kind::Fail:
      l.result = Result::Mismatch;
      // Submission: Auth-Error-Code leads the text, and the frontend sends it
      // instead of its own 535 5.7.8.
      if (!d.error_code.empty() && auth_protocol(req.protocol, *settings_) == "smtp")
        l.reply.set("reason", d.error_code + " " + d.text);
      else
        l.reply.set("reason", d.text);
      l.error = "auth_http: Auth-Status: " + d.text;
      l.disconnect = d.wait.count() == 0;  // nginx keeps the connection only with Auth-Wait
      return l;
    case Decision::Kind::Ok:
      break;
  }
  for (const auto& [k, v] : default_fields_) l.reply.set(k, v);
  l.reply.set("proxy", "");
  l.reply.set("host", d.server);
  l.reply.set("port", std::to_string(d.port));
  if (d.user) l.reply.set("destuser", *d.user);
  if (d.pass) {
    l.reply.set("pass", *d.pass);
    core::secure_zero(*d.pass);
  }
  for (const auto& [k, v] : override_fields_) l.reply.set(k, v);
  l.result = Result::Ok;
  return l;
}

net::Task<Lookup> AuthHttp::lookup(const Request& req) {
  if (req.lookup_only) {
    Lookup l = temp_fail(*settings_, "cannot look a user up without a password (nginx protocol)");
    co_return l;
  }
  std::string text = build_request(req, *settings_);
  core::Secret request(text);
  core::secure_zero(text);
  Decision d = co_await consult(*settings_, request);
  // nginx: a failure waits Auth-Wait seconds, then shows the text.
  if (d.kind == Decision::Kind::Fail) co_await sleep_for(d.wait);
  co_return answer(req, d);
}

core::Result<std::shared_ptr<Passdb>> make(const config::Passdb& cfg) {
  if (!dynamic_cast<const Settings*>(cfg.settings.get())) {
    return core::fail("auth_http: url not set");
  }
  return std::make_shared<AuthHttp>(cfg);
}

}  // namespace portier::passdb::auth_http
