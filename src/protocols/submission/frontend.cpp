// Submission pre-login server dialogue (spec §5.5).
//
//   S: 220 proxy.lab portier ready.
//   C: EHLO client.lab
//   S: 250-proxy.lab
//   S: 250-8BITMIME
//   S: 250-AUTH PLAIN LOGIN
//   S: 250-ENHANCEDSTATUSCODES
//   S: 250-SIZE
//   S: 250-STARTTLS
//   S: 250-PIPELINING
//   S: 250 XCLIENT ADDR PORT ...                (trusted networks only)
//   C: AUTH PLAIN AHVzZXIxAHBhc3M=              -> Authenticate (engine: passdb, proxy)
//   S: 235 2.7.0 Logged in.                     (the backend's reply, via the BackendLogin)
//   C: MAIL FROM:<user1@lab>                    (pipelined or not: relayed to the backend)
//
// Input the client sends after the AUTH command stays in the buffer
// untouched: on success the engine relays it to the backend
// (take_pending_input); on failure parsing resumes with it.

#include "protocols/submission/frontend.hpp"

#include <asio/ip/address.hpp>

#include "core/base64.hpp"
#include "core/secure.hpp"
#include "login/command_budget.hpp"
#include "core/strings.hpp"
#include "protocols/submission/smtp.hpp"

namespace portier::protocols::submission {

using login::AuthFailure;
using login::FailureType;
using login::FrontendEvent;

namespace {

constexpr std::string_view kAuthFailed = "535 5.7.8 Authentication failed.";
constexpr std::string_view kUnavailable = "454 4.7.0 Account is temporarily unavailable.";
constexpr std::string_view kAuthRequired = "530 5.7.0 Authentication required.";
constexpr std::string_view kCleartextDenied =
    "523 5.7.10 Plaintext authentication disallowed on non-secure (SSL/TLS) connections.";
constexpr size_t kMaxSessionIdLength = 64;
// Compact the input buffer once this much of it has been consumed.
constexpr size_t kCompactThreshold = 4096;

bool is_cleartext_mech(std::string_view mech) {
  return core::iequals(mech, "PLAIN") || core::iequals(mech, "LOGIN");
}

bool printable_ascii(std::string_view s) {
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (c <= 0x20 || c >= 0x7f) return false;
  }
  return true;
}

// A passdb reason goes into a reply line: keep it on one line.
std::string one_line(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    out.push_back(c < 0x20 || c == 0x7f ? ' ' : ch);
  }
  return out;
}

bool unavailable(std::string_view v) {
  return core::iequals(v, "[UNAVAILABLE]") || core::iequals(v, "[TEMPUNAVAIL]");
}

std::optional<uint16_t> parse_port(std::string_view s) {
  auto v = core::parse_uint(s);
  if (!v || *v == 0 || *v > 65535) return std::nullopt;
  return static_cast<uint16_t>(*v);
}

// XCLIENT ADDR: `1.2.3.4`, `IPV6:2001:db8::1` (2.4 style) or a bare v6 (2.3).
std::optional<asio::ip::address> parse_xclient_addr(std::string_view s) {
  bool v6 = false;
  if (core::istarts_with(s, "IPV6:")) {
    s.remove_prefix(5);
    v6 = true;
  }
  asio::error_code ec;
  auto a = asio::ip::make_address(std::string(s), ec);
  if (ec || (v6 && !a.is_v6())) return std::nullopt;
  return a;
}

}  // namespace

Frontend::Frontend(const login::FrontendSettings& settings, login::ClientInfo& client)
    : settings_(settings), client_(client) {
  if (settings_.greeting.empty()) settings_.greeting = "portier ready.";
  if (settings_.hostname.empty()) settings_.hostname = "localhost";
}

Frontend::~Frontend() { wipe_input(); }

std::unique_ptr<login::Frontend> make_frontend(const login::FrontendSettings& settings,
                                               login::ClientInfo& client) {
  return std::make_unique<Frontend>(settings, client);
}

bool Frontend::cleartext_allowed() const { return client_.secured() || settings_.allow_cleartext; }

bool Frontend::mech_configured(std::string_view mech) const {
  for (const auto& m : settings_.mechanisms)
    if (core::iequals(m, mech)) return true;
  return false;
}

std::string Frontend::ehlo_reply() const {
  // Dovecot's order (submission-login cmd_helo_reply); BURL and CHUNKING are
  // not offered: portier cannot know that the backend has them.
  std::vector<std::string> lines;
  lines.push_back(settings_.hostname);
  lines.emplace_back("8BITMIME");
  if (cleartext_allowed()) {
    std::string auth = "AUTH";
    for (const auto& m : settings_.mechanisms) {
      if (!cleartext_allowed() && is_cleartext_mech(m)) continue;
      auth += ' ';
      auth += m;
    }
    if (auth.size() > 4) lines.push_back(std::move(auth));
  }
  lines.emplace_back("ENHANCEDSTATUSCODES");
  lines.emplace_back("SIZE");
  if (client_.starttls_available()) lines.emplace_back("STARTTLS");
  lines.emplace_back("PIPELINING");
  if (client_.trusted) lines.push_back("XCLIENT " + std::string(kXclientAttributes));
  std::string out;
  for (size_t i = 0; i < lines.size(); ++i) {
    out += i + 1 == lines.size() ? "250 " : "250-";
    out += lines[i];
    out += "\r\n";
  }
  return out;
}

void Frontend::start() {
  // Implicit TLS: the end client is on TLS unless a trusted hop says otherwise later.
  if (client_.tls) client_.end_client_tls = true;
  reply("220 " + settings_.hostname + " " + settings_.greeting);
}

void Frontend::feed(std::string_view data) {
  if (mode_ == Mode::Closed) return;
  in_.append(data);
}

void Frontend::reply(std::string_view line) {
  output_ += line;
  output_ += "\r\n";
}

void Frontend::consume(size_t n) {
  in_pos_ += n;
  if (in_pos_ == in_.size()) {
    wipe_input();
  } else if (in_pos_ >= kCompactThreshold) {
    core::secure_zero(in_.data(), in_pos_);
    in_.erase(0, in_pos_);
    in_pos_ = 0;
  }
}

void Frontend::wipe_input() {
  // The buffer may have held a password: zero it before it is reused or freed.
  core::secure_zero(in_);
  in_pos_ = 0;
}

FrontendEvent Frontend::next() {
  for (;;) {
    if (mode_ == Mode::Closed) return FrontendEvent::Close;
    // The login is with the engine; later input stays pending.
    if (mode_ == Mode::AuthPending) return FrontendEvent::NeedInput;
    if (Event ev = next_line()) return *ev;
  }
}

Frontend::Event Frontend::close_with(std::string_view line) {
  if (!line.starts_with("2") && line.size() > 4) {
    // "<code> <enhanced> [<hostname> ]<text>": keep the text.
    std::string_view text = line.substr(4);
    if (auto sp = text.find(' '); sp != std::string_view::npos && text.front() >= '2' &&
                                  text.front() <= '5')
      text.remove_prefix(sp + 1);
    if (text.starts_with(settings_.hostname + " ")) text.remove_prefix(settings_.hostname.size() + 1);
    // The log names the limit as the other protocols do.
    set_close_reason(text.starts_with("Line too long") ? "Too long command line" : text);
  }
  output_ += line;
  mode_ = Mode::Closed;
  sasl_.reset();
  wipe_input();
  return FrontendEvent::Close;
}

Frontend::Event Frontend::invalid(std::string_view reply_line) {
  reply(reply_line);
  if (settings_.max_invalid_commands > 0 && ++invalid_commands_ >= settings_.max_invalid_commands)
    return close_with("421 4.7.0 " + settings_.hostname + " Too many invalid commands.\r\n");
  return std::nullopt;
}

Frontend::Event Frontend::next_line() {
  std::string_view avail = std::string_view(in_).substr(in_pos_);
  size_t lf = avail.find('\n');
  if (lf == std::string_view::npos) {
    // Bounded: the rest of an over-long line cannot be re-synchronised.
    if (avail.size() > login::line_limit(settings_))
      return close_with("500 5.5.2 Line too long\r\n");
    return FrontendEvent::NeedInput;
  }
  if (lf > login::line_limit(settings_)) return close_with("500 5.5.2 Line too long\r\n");
  std::string line(avail.substr(0, lf));
  if (!line.empty() && line.back() == '\r') line.pop_back();
  consume(lf + 1);

  Event ev;
  if (mode_ == Mode::SaslResponse) {
    ev = sasl_response(line);
  } else {
    std::string_view l = line;
    size_t sp = l.find(' ');
    std::string_view verb = l.substr(0, sp);
    std::string_view args = sp == std::string_view::npos ? std::string_view{} : l.substr(sp + 1);
    while (!args.empty() && args.front() == ' ') args.remove_prefix(1);
    while (!args.empty() && args.back() == ' ') args.remove_suffix(1);
    ev = dispatch(verb, args);
  }
  core::secure_zero(line);  // AUTH initial response or SASL response
  return ev;
}

Frontend::Event Frontend::dispatch(std::string_view verb, std::string_view args) {
  if (verb.empty()) return invalid("500 5.5.2 Invalid command syntax");
  if (core::iequals(verb, "EHLO")) return cmd_ehlo(args, true);
  if (core::iequals(verb, "HELO")) return cmd_ehlo(args, false);
  if (core::iequals(verb, "AUTH")) return cmd_auth(args);
  if (core::iequals(verb, "STARTTLS")) return cmd_starttls(args);
  if (core::iequals(verb, "NOOP")) {
    reply("250 2.0.0 OK");
    return std::nullopt;
  }
  if (core::iequals(verb, "RSET")) {
    if (!args.empty()) return invalid("501 5.5.4 Invalid parameters");
    reply("250 2.0.0 OK");
    return std::nullopt;
  }
  if (core::iequals(verb, "QUIT")) return close_with("221 2.0.0 Bye\r\n");
  if (core::iequals(verb, "XCLIENT")) return cmd_xclient(args);
  if (core::iequals(verb, "MAIL") || core::iequals(verb, "RCPT") || core::iequals(verb, "DATA") ||
      core::iequals(verb, "BDAT") || core::iequals(verb, "BURL") || core::iequals(verb, "VRFY")) {
    reply(kAuthRequired);
    return std::nullopt;
  }
  return invalid("500 5.5.1 Unknown command");
}

Frontend::Event Frontend::cmd_ehlo(std::string_view args, bool ehlo) {
  if (args.empty() || args.find(' ') != std::string_view::npos || !printable_ascii(args))
    return invalid("501 5.5.4 Invalid domain");
  helo_seen_ = true;
  client_helo_.assign(args);
  client_proto_ = ehlo ? "ESMTP" : "SMTP";
  if (ehlo) {
    output_ += ehlo_reply();
  } else {
    reply("250 " + settings_.hostname);
  }
  return std::nullopt;
}

Frontend::Event Frontend::cmd_starttls(std::string_view args) {
  if (!args.empty()) return invalid("501 5.5.4 Invalid parameters");
  if (client_.tls) {
    reply("503 5.5.1 TLS is already active.");
    return std::nullopt;
  }
  if (!client_.tls_configured) {
    reply("502 5.5.1 TLS support isn't enabled.");
    return std::nullopt;
  }
  reply("220 2.0.0 Begin TLS negotiation now.");
  // Anything pipelined after STARTTLS arrived in plaintext and must not be
  // executed as if it came over TLS (CVE-2011-0411 style command injection).
  wipe_input();
  return FrontendEvent::StartTls;
}

void Frontend::tls_started() {
  client_.end_client_tls = true;
  wipe_input();  // nothing read before the handshake may survive it
  // RFC 3207 §4.2: forget everything learned before TLS; EHLO again.
  helo_seen_ = false;
  client_helo_.clear();
  client_proto_.clear();
}

Frontend::Event Frontend::cmd_auth(std::string_view args) {
  auto parts = core::split_ws(args);
  if (parts.empty() || parts.size() > 2) return invalid("501 5.5.4 Invalid parameters");
  if (!helo_seen_) {
    reply("503 5.5.1 Send EHLO first.");
    return std::nullopt;
  }
  const std::string mech = core::to_upper(parts[0]);
  std::unique_ptr<sasl::ServerMech> server;
  if (mech_configured(mech)) server = sasl::make_server_mech(mech);
  if (!server) {
    reply("504 5.5.4 Unsupported authentication mechanism.");
    return std::nullopt;
  }
  if (is_cleartext_mech(mech) && !cleartext_allowed()) {
    reply(kCleartextDenied);
    return std::nullopt;
  }
  std::optional<std::string> ir;
  if (parts.size() == 2) {
    // RFC 4954: "=" is an empty initial response.
    if (parts[1] == "=") {
      ir.emplace();
    } else {
      ir = core::base64_decode(parts[1]);
      if (!ir) {
        reply("501 5.5.2 Invalid base64 data in initial response");
        return std::nullopt;
      }
    }
  }
  sasl_ = std::move(server);
  sasl::Step step = ir ? sasl_->start(std::string_view(*ir)) : sasl_->start(std::nullopt);
  if (ir) core::secure_zero(*ir);
  return sasl_result(step);
}

Frontend::Event Frontend::sasl_result(const sasl::Step& step) {
  switch (step.status) {
    case sasl::Status::Continue:
      output_ += "334 ";
      output_ += core::base64_encode(step.challenge);
      output_ += "\r\n";
      mode_ = Mode::SaslResponse;
      return std::nullopt;
    case sasl::Status::Done:
      credentials_ = sasl_->credentials();
      sasl_.reset();
      mode_ = Mode::AuthPending;
      return FrontendEvent::Authenticate;
    case sasl::Status::Failed:
      break;
  }
  sasl_.reset();
  mode_ = Mode::Commands;
  reply(kAuthFailed);
  return std::nullopt;
}

Frontend::Event Frontend::sasl_response(std::string_view line) {
  if (line == "*") {
    sasl_.reset();
    mode_ = Mode::Commands;
    reply("501 5.5.2 Authentication aborted by client.");
    return std::nullopt;
  }
  std::optional<std::string> response = core::base64_decode(line);
  if (!response) {
    sasl_.reset();
    mode_ = Mode::Commands;
    reply("501 5.5.2 Invalid base64 data in continued response");
    return std::nullopt;
  }
  sasl::Step step = sasl_->step(*response);
  core::secure_zero(*response);
  return sasl_result(step);
}

Frontend::Event Frontend::cmd_xclient(std::string_view args) {
  if (!client_.trusted) {
    reply("550 5.7.14 You are not from trusted IP");
    return std::nullopt;
  }
  // Validate everything first: a bad attribute changes nothing.
  login::ClientInfo next = client_;
  ClientSmtpInfo up = upstream_;
  auto parts = core::split_ws(args);
  if (parts.empty()) return invalid("501 5.5.4 Invalid parameters");
  for (std::string_view p : parts) {
    size_t eq = p.find('=');
    if (eq == 0 || eq == std::string_view::npos)
      return invalid("501 5.5.4 Invalid parameter: " + sanitize_for_log(p, 64));
    const std::string key = core::to_upper(p.substr(0, eq));
    auto value = xtext_decode(p.substr(eq + 1));
    if (!value) return invalid("501 5.5.4 Invalid " + sanitize_for_log(key, 32) + " parameter");
    const std::string& v = *value;
    const std::string bad = "501 5.5.4 Invalid " + key + " parameter";
    if (key == "ADDR" || key == "DESTADDR") {
      if (unavailable(v)) continue;
      auto a = parse_xclient_addr(v);
      if (!a) return invalid(bad);
      (key == "ADDR" ? next.remote_ip : next.local_ip) = *a;
    } else if (key == "PORT" || key == "DESTPORT") {
      if (unavailable(v)) continue;
      auto port = parse_port(v);
      if (!port) return invalid(bad);
      (key == "PORT" ? next.remote_port : next.local_port) = *port;
    } else if (key == "HELO") {
      if (unavailable(v)) continue;
      if (!printable_ascii(v)) return invalid(bad);
      up.helo = v;
    } else if (key == "PROTO") {
      if (unavailable(v)) continue;
      std::string proto = core::to_upper(v);
      if (proto != "SMTP" && proto != "ESMTP" && proto != "LMTP") return invalid(bad);
      up.proto = proto;
    } else if (key == "LOGIN") {
      if (unavailable(v)) continue;
      up.login = v;
    } else if (key == "SESSION") {
      if (unavailable(v)) continue;
      if (v.empty() || v.size() > kMaxSessionIdLength || !printable_ascii(v)) return invalid(bad);
      next.session_id = v;
    } else if (key == "TTL") {
      auto ttl = core::parse_uint(v);
      if (!ttl || *ttl > 0xffffffffULL) return invalid(bad);
      next.proxy_ttl = static_cast<unsigned>(*ttl);
    } else if (key == "TIMEOUT") {
      if (!core::parse_uint(v)) return invalid(bad);
    } else if (key == "CLIENT-TRANSPORT") {
      next.end_client_tls = core::istarts_with(v, "TLS");
    }
    // Anything else (NAME, DESTNAME, FORWARD...) is accepted and ignored.
  }
  client_.remote_ip = next.remote_ip;
  client_.remote_port = next.remote_port;
  client_.local_ip = next.local_ip;
  client_.local_port = next.local_port;
  client_.session_id = next.session_id;
  client_.proxy_ttl = next.proxy_ttl;
  client_.end_client_tls = next.end_client_tls;
  upstream_ = std::move(up);
  // Like a new connection: a fresh greeting, and EHLO is needed again.
  helo_seen_ = false;
  reply("220 " + settings_.hostname + " " + settings_.greeting);
  return std::nullopt;
}

sasl::Credentials Frontend::take_credentials() { return std::move(credentials_); }

void Frontend::auth_failed(AuthFailure kind, std::string_view reason) {
  credentials_ = sasl::Credentials{};
  mode_ = Mode::Commands;
  switch (kind) {
    case AuthFailure::Failed:
      reply(reason.empty() ? std::string(kAuthFailed) : "535 5.7.8 " + one_line(reason));
      break;
    case AuthFailure::TempFail:
      reply("454 4.7.0 " + (reason.empty() ? std::string("Temporary authentication failure.")
                                           : one_line(reason)));
      break;
    case AuthFailure::Disabled:
      reply("525 5.7.13 " + (reason.empty() ? std::string("Login disabled for this user.")
                                            : one_line(reason)));
      break;
    case AuthFailure::CleartextDenied:
      reply(kCleartextDenied);
      break;
    case AuthFailure::Limit:
      reply("454 4.7.0 Too many sessions for this user.");
      break;
  }
}

std::unique_ptr<login::BackendLogin> Frontend::make_backend_login(
    const login::BackendLoginParams& p) {
  // A trusted upstream's XCLIENT describes the end client better than the
  // upstream proxy's own EHLO does.
  smtp_.helo = !upstream_.helo.empty() ? upstream_.helo : client_helo_;
  smtp_.proto = !upstream_.proto.empty() ? upstream_.proto : client_proto_;
  // An upstream's XCLIENT LOGIN never names the backend user: the backend
  // gets the user portier authenticated. A different one is only reported.
  smtp_.login = upstream_.login;  // kept for the record; BackendLogin never sends it
  if (!upstream_.login.empty() && upstream_.login != p.user)
    log_note_ = "Ignoring XCLIENT LOGIN=<" + sanitize_for_log(upstream_.login, 64) +
                "> from the upstream: the backend login is <" + sanitize_for_log(p.user, 64) + ">";
  return std::make_unique<BackendLogin>(p, smtp_);
}

void Frontend::proxy_failed(const login::ProxyFailure& f) {
  credentials_ = sasl::Credentials{};
  mode_ = Mode::Commands;
  // The one switch that maps a backend failure to the Submission client reply (§5.4).
  switch (f.type) {
    case FailureType::Connect:
    case FailureType::Internal:
    case FailureType::InternalConfig:
    case FailureType::Remote:
    case FailureType::RemoteConfig:
    case FailureType::Protocol:
    case FailureType::AuthNotReplied:
    case FailureType::AuthRedirect:  // referrals are not followed in v1
    case FailureType::kCount:
      reply(kUnavailable);
      return;
    case FailureType::AuthTempfail:
    case FailureType::AuthReplied:
    case FailureType::LimitReached:
      // The backend's own 4xx/5xx reply, as the BackendLogin rendered it.
      if (!f.client_reply.empty()) {
        output_ += f.client_reply;
      } else {
        reply(f.type == FailureType::AuthReplied ? kAuthFailed : kUnavailable);
      }
      return;
  }
}

void Frontend::timed_out() {
  const std::string_view text = mode_ == Mode::AuthPending ? "Timeout while finishing login."
                                                           : "Disconnected for inactivity.";
  output_ += "421 4.4.2 " + settings_.hostname + " " + std::string(text) + "\r\n";
  mode_ = Mode::Closed;
  sasl_.reset();
}

void Frontend::goodbye(std::string_view reason) {
  output_ += "421 4.7.0 " + settings_.hostname + " " + std::string(reason) + "\r\n";
  mode_ = Mode::Closed;
  sasl_.reset();
}

std::string Frontend::take_pending_input() {
  std::string rest = in_.substr(in_pos_);
  wipe_input();
  return rest;
}

}  // namespace portier::protocols::submission
