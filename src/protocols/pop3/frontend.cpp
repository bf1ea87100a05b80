// POP3 pre-login server dialogue (spec §4.3; Dovecot pop3-login).
//
//   S: +OK [XCLIENT] portier ready.             ([XCLIENT] only for trusted networks)
//   C: CAPA
//   S: +OK
//   S: CAPA
//   S: TOP
//   S: UIDL
//   S: RESP-CODES
//   S: PIPELINING
//   S: AUTH-RESP-CODE
//   S: STLS                                     (TLS configured, not active)
//   S: USER                                     (cleartext allowed or secured)
//   S: SASL PLAIN LOGIN
//   S: .
//   C: USER user1
//   S: +OK                                      (answered locally)
//   C: PASS pass                                -> Authenticate (engine: passdb, proxy)
//   S: +OK Logged in.                           (the backend's line, via the BackendLogin)
//   C: STAT                                     (pipelined or not: relayed to the backend)
//
// AUTH <mech> [<b64 IR> | =] runs the SASL exchange locally (`+ <b64>`
// challenges, `*` cancels); bare AUTH lists the mechanisms. Input the client
// sends after the login command stays in the buffer untouched: on success
// the engine relays it to the backend (take_pending_input); on failure
// parsing resumes with it. Three bad commands in a row disconnect.

#include "protocols/pop3/frontend.hpp"

#include <asio/ip/address.hpp>

#include "core/base64.hpp"
#include "core/secure.hpp"
#include "login/command_budget.hpp"
#include "core/strings.hpp"
#include "protocols/pop3/backend_login.hpp"
#include "protocols/pop3/text.hpp"

namespace portier::protocols::pop3 {

using login::AuthFailure;
using login::FailureType;
using login::FrontendEvent;

namespace {

constexpr std::string_view kAuthFailed = "Authentication failed.";
constexpr std::string_view kTempFailed = "Temporary authentication failure.";
constexpr std::string_view kPlaintextDisabled =
    "Plaintext authentication disallowed on non-secure (SSL/TLS) connections.";
constexpr std::string_view kRetryable = "-ERR [SYS/TEMP] Account is temporarily unavailable.\r\n";
constexpr std::string_view kConfig = "-ERR Account is temporarily unavailable.\r\n";
constexpr size_t kMaxSessionIdLength = 64;  // Dovecot LOGIN_MAX_SESSION_ID_LEN
// Compact the input buffer once this much of it has been consumed.
constexpr size_t kCompactThreshold = 4096;

bool is_cleartext_mech(std::string_view mech) {
  return core::iequals(mech, "PLAIN") || core::iequals(mech, "LOGIN");
}

std::optional<uint16_t> parse_port(std::string_view s) {
  auto v = core::parse_uint(s);
  if (!v || *v == 0 || *v > 65535) return std::nullopt;
  return static_cast<uint16_t>(*v);
}

std::optional<asio::ip::address> parse_addr(std::string_view s) {
  if (s.size() >= 2 && s.front() == '[' && s.back() == ']') s = s.substr(1, s.size() - 2);
  if (core::istarts_with(s, "IPV6:")) s.remove_prefix(5);  // Submission-style, tolerated
  asio::error_code ec;
  auto a = asio::ip::make_address(std::string(s), ec);
  if (ec) return std::nullopt;
  return a;
}

}  // namespace

Frontend::Frontend(const login::FrontendSettings& settings, login::ClientInfo& client)
    : settings_(settings), client_(client) {
  if (settings_.greeting.empty()) settings_.greeting = "portier ready.";
}

Frontend::~Frontend() {
  wipe_input();
  if (last_user_) core::secure_zero(*last_user_);
}

std::unique_ptr<login::Frontend> make_frontend(const login::FrontendSettings& settings,
                                               login::ClientInfo& client) {
  return std::make_unique<Frontend>(settings, client);
}

bool Frontend::cleartext_allowed() const { return client_.secured() || settings_.allow_cleartext; }

bool Frontend::mech_advertised(std::string_view mech) const {
  if (is_cleartext_mech(mech) && !cleartext_allowed()) return false;
  for (const auto& m : settings_.mechanisms)
    if (core::iequals(m, mech)) return true;
  return false;
}

std::string Frontend::capa_reply() const {
  std::string out = "+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\n";
  if (client_.starttls_available()) out += "STLS\r\n";
  if (cleartext_allowed()) out += "USER\r\n";
  out += "SASL";
  for (const auto& m : settings_.mechanisms) {
    if (!mech_advertised(m)) continue;
    out += ' ';
    out += core::to_upper(m);
  }
  out += "\r\n.\r\n";
  return out;
}

void Frontend::start() {
  // Implicit TLS: the end client is on TLS unless a trusted hop says otherwise later.
  if (client_.tls) client_.end_client_tls = true;
  std::string line = "+OK ";
  if (client_.trusted) line += "[XCLIENT] ";  // Dovecot: saves the upstream proxy a CAPA
  line += one_line(settings_.greeting);
  reply(line);
}

void Frontend::feed(std::string_view data) {
  if (mode_ == Mode::Closed) return;
  in_.append(data);
}

void Frontend::reply(std::string_view line) {
  output_ += line;
  output_ += "\r\n";
}

void Frontend::auth_error(std::string_view text) {
  // Dovecot's POP3_CMD_REPLY_AUTH_ERROR: the text's own code wins.
  if (!text.empty() && text.front() == '[') {
    reply("-ERR " + std::string(text));
  } else {
    reply("-ERR [AUTH] " + std::string(text));
  }
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

Frontend::Event Frontend::close_with(std::string_view lines) {
  if (lines.find("Too many invalid") != std::string_view::npos)
    set_close_reason("Too many invalid commands");
  else if (lines.starts_with("-ERR "))
    set_close_reason(lines.substr(5));
  output_ += lines;
  mode_ = Mode::Closed;
  sasl_.reset();
  wipe_input();
  return FrontendEvent::Close;
}

Frontend::Event Frontend::bad(std::string_view reply_line) {
  reply(reply_line);
  if (settings_.max_invalid_commands > 0 && ++bad_commands_ >= settings_.max_invalid_commands)
    return close_with("-ERR Too many invalid bad commands.\r\n");
  return std::nullopt;
}

Frontend::Event Frontend::next_line() {
  std::string_view avail = std::string_view(in_).substr(in_pos_);
  size_t lf = avail.find('\n');
  if (lf == std::string_view::npos) {
    // Bounded: the rest of an over-long line cannot be re-synchronised.
    if (avail.size() > login::line_limit(settings_))
      return close_with("-ERR Input buffer full, aborting\r\n");
    return FrontendEvent::NeedInput;
  }
  if (lf > login::line_limit(settings_)) return close_with("-ERR Input buffer full, aborting\r\n");
  std::string line(avail.substr(0, lf));
  if (!line.empty() && line.back() == '\r') line.pop_back();
  consume(lf + 1);

  Event ev;
  if (mode_ == Mode::SaslResponse) {
    ev = sasl_response(line);
  } else {
    // Dovecot: the verb ends at the first space; the arguments are the rest
    // of the line as is (a password may hold spaces, even trailing ones).
    std::string_view l = line;
    size_t sp = l.find(' ');
    std::string_view verb = l.substr(0, sp);
    std::string_view args = sp == std::string_view::npos ? std::string_view{} : l.substr(sp + 1);
    ev = dispatch(verb, args);
  }
  core::secure_zero(line);  // PASS, AUTH initial response or SASL response
  return ev;
}

Frontend::Event Frontend::dispatch(std::string_view verb, std::string_view args) {
  Event ev;
  if (core::iequals(verb, "CAPA")) {
    output_ += capa_reply();
  } else if (core::iequals(verb, "USER")) {
    ev = cmd_user(args);
  } else if (core::iequals(verb, "PASS")) {
    ev = cmd_pass(args);
  } else if (core::iequals(verb, "AUTH")) {
    ev = cmd_auth(args);
  } else if (core::iequals(verb, "APOP")) {
    reply("-ERR APOP not enabled.");
  } else if (core::iequals(verb, "STLS")) {
    ev = cmd_stls();
  } else if (core::iequals(verb, "QUIT")) {
    return close_with("+OK Logging out\r\n");
  } else if (core::iequals(verb, "XCLIENT")) {
    ev = cmd_xclient(args);
  } else if (core::iequals(verb, "XOIP")) {
    // Zimbra's patched nginx: XCLIENT with ADDR only.
    ev = cmd_xclient("ADDR=" + std::string(args));
  } else {
    return bad("-ERR Unknown command.");
  }
  // Dovecot counts bad commands in a row: a known command resets the count.
  bad_commands_ = 0;
  return ev;
}

Frontend::Event Frontend::cmd_user(std::string_view args) {
  if (!cleartext_allowed()) {
    auth_error(kPlaintextDisabled);
    return std::nullopt;
  }
  if (last_user_) core::secure_zero(*last_user_);
  last_user_.emplace(args);
  reply("+OK");
  return std::nullopt;
}

Frontend::Event Frontend::cmd_pass(std::string_view args) {
  if (!cleartext_allowed()) {
    // The client may show only the PASS reply: say why here too.
    auth_error(kPlaintextDisabled);
    return std::nullopt;
  }
  if (!last_user_) {
    reply("-ERR No username given.");
    return std::nullopt;
  }
  credentials_ = sasl::Credentials{};
  credentials_.mech = "PLAIN";
  credentials_.authcid = std::move(*last_user_);
  credentials_.password.assign(args);
  last_user_.reset();
  mode_ = Mode::AuthPending;
  return FrontendEvent::Authenticate;
}

Frontend::Event Frontend::cmd_auth(std::string_view args) {
  if (args.empty()) {
    // Old-style SASL discovery (MS Outlook).
    output_ += "+OK\r\n";
    for (const auto& m : settings_.mechanisms) {
      if (!mech_advertised(m)) continue;
      output_ += core::to_upper(m);
      output_ += "\r\n";
    }
    output_ += ".\r\n";
    return std::nullopt;
  }
  size_t sp = args.find(' ');
  const std::string mech = core::to_upper(args.substr(0, sp));
  std::optional<std::string_view> ir_text;
  if (sp != std::string_view::npos) ir_text = args.substr(sp + 1);

  bool configured = false;
  for (const auto& m : settings_.mechanisms)
    if (core::iequals(m, mech)) configured = true;
  std::unique_ptr<sasl::ServerMech> server;
  if (configured) server = sasl::make_server_mech(mech);
  if (!server) {
    auth_error("Unsupported authentication mechanism.");
    return std::nullopt;
  }
  if (is_cleartext_mech(mech) && !cleartext_allowed()) {
    auth_error(kPlaintextDisabled);
    return std::nullopt;
  }
  std::optional<std::string> ir;
  if (ir_text) {
    if (*ir_text == "=") {  // RFC 5034: "=" is an empty initial response
      ir.emplace();
    } else {
      ir = core::base64_decode(*ir_text);
      if (!ir) {
        auth_error("Invalid base64 data in initial response");
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
      output_ += "+ ";
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
  auth_error(kAuthFailed);
  return std::nullopt;
}

Frontend::Event Frontend::sasl_response(std::string_view line) {
  if (line == "*") {
    sasl_.reset();
    mode_ = Mode::Commands;
    reply("-ERR Authentication aborted by client.");
    return std::nullopt;
  }
  std::optional<std::string> response = core::base64_decode(line);
  if (!response) {
    sasl_.reset();
    mode_ = Mode::Commands;
    auth_error("Invalid base64 data in continued response");
    return std::nullopt;
  }
  sasl::Step step = sasl_->step(*response);
  core::secure_zero(*response);
  return sasl_result(step);
}

Frontend::Event Frontend::cmd_stls() {
  if (client_.tls) {
    reply("-ERR TLS is already active.");
    return std::nullopt;
  }
  if (!client_.tls_configured) {
    reply("-ERR TLS support isn't enabled.");
    return std::nullopt;
  }
  reply("+OK Begin TLS negotiation now.");
  // Anything pipelined after STLS arrived in plaintext and must not be
  // executed as if it came over TLS (CVE-2011-0411 style command injection).
  wipe_input();
  return FrontendEvent::StartTls;
}

void Frontend::tls_started() {
  client_.end_client_tls = true;
  wipe_input();  // nothing read before the handshake may survive it
  // A USER given in plaintext must not be completed by a PASS over TLS.
  if (last_user_) core::secure_zero(*last_user_);
  last_user_.reset();
}

Frontend::Event Frontend::cmd_xclient(std::string_view args) {
  if (!client_.trusted) {
    reply("+OK You are not from trusted IP - ignoring");
    return std::nullopt;
  }
  // Validate everything first: a bad attribute changes nothing (Dovecot
  // applies the good ones before the bad one; all-or-nothing is clearer).
  login::ClientInfo next = client_;
  bool ok = true;
  for (std::string_view p : core::split_ws(args)) {
    size_t eq = p.find('=');
    if (eq == std::string_view::npos) continue;  // Dovecot ignores what it does not know
    const std::string key = core::to_upper(p.substr(0, eq));
    std::string_view v = p.substr(eq + 1);
    if (key == "ADDR" || key == "DESTADDR") {
      auto a = parse_addr(v);
      if (!a) { ok = false; break; }
      (key == "ADDR" ? next.remote_ip : next.local_ip) = *a;
    } else if (key == "PORT" || key == "DESTPORT") {
      auto port = parse_port(v);
      if (!port) { ok = false; break; }
      (key == "PORT" ? next.remote_port : next.local_port) = *port;
    } else if (key == "SESSION") {
      // Dovecot ignores an over-long id; portier also ignores one that could
      // not be forwarded on an XCLIENT/ID line.
      if (v.size() <= kMaxSessionIdLength && xclient_value_ok(v)) next.session_id = v;
    } else if (key == "TTL") {
      auto ttl = core::parse_uint(v);
      if (!ttl || *ttl > 0xffffffffULL) { ok = false; break; }
      next.proxy_ttl = static_cast<unsigned>(*ttl);
    } else if (key == "CLIENT-TRANSPORT") {
      next.end_client_tls = core::iequals(v, "TLS");
    } else if (key == "FORWARD") {
      // Checked, not kept: ClientInfo has no place for forward fields yet.
      if (!core::base64_decode(v)) { ok = false; break; }
    }
  }
  if (!ok) {
    reply("-ERR Invalid parameters");
    return std::nullopt;
  }
  client_.remote_ip = next.remote_ip;
  client_.remote_port = next.remote_port;
  client_.local_ip = next.local_ip;
  client_.local_port = next.local_port;
  client_.session_id = next.session_id;
  client_.proxy_ttl = next.proxy_ttl;
  client_.end_client_tls = next.end_client_tls;
  reply("+OK Updated");
  return std::nullopt;
}

sasl::Credentials Frontend::take_credentials() { return std::move(credentials_); }

void Frontend::auth_failed(AuthFailure kind, std::string_view reason) {
  credentials_ = sasl::Credentials{};
  mode_ = Mode::Commands;
  switch (kind) {
    case AuthFailure::Failed:
    case AuthFailure::Disabled:
      auth_error(reason.empty() ? std::string(kAuthFailed) : one_line(reason));
      break;
    case AuthFailure::TempFail:
      reply("-ERR [SYS/TEMP] " + (reason.empty() ? std::string(kTempFailed) : one_line(reason)));
      break;
    case AuthFailure::CleartextDenied:
      auth_error(kPlaintextDisabled);
      break;
    case AuthFailure::Limit:
      // Dovecot's LIMIT reply prefix.
      reply("-ERR [IN-USE] " + (reason.empty() ? std::string("Too many connections for this user.")
                                                : one_line(reason)));
      break;
  }
}

std::unique_ptr<login::BackendLogin> Frontend::make_backend_login(
    const login::BackendLoginParams& p) {
  return std::make_unique<BackendLogin>(p);
}

void Frontend::proxy_failed(const login::ProxyFailure& f) {
  credentials_ = sasl::Credentials{};
  mode_ = Mode::Commands;
  // The one switch that maps a backend failure to the POP3 client reply (§4.2).
  switch (f.type) {
    case FailureType::Connect:
    case FailureType::Internal:
    case FailureType::Remote:
    case FailureType::Protocol:
    case FailureType::AuthRedirect:  // referrals are not followed in v1: as Remote
    case FailureType::kCount:
      output_ += kRetryable;
      return;
    case FailureType::InternalConfig:
    case FailureType::RemoteConfig:
    case FailureType::AuthNotReplied:
      output_ += kConfig;
      return;
    case FailureType::AuthTempfail:
      output_ += f.client_reply.empty() ? std::string(kRetryable) : f.client_reply;
      return;
    case FailureType::AuthReplied:
    case FailureType::LimitReached:
      output_ += f.client_reply.empty() ? std::string(kMaskedAuthFailedReply) : f.client_reply;
      return;
  }
}

void Frontend::timed_out() {
  std::string_view text = "Disconnected for inactivity.";
  if (mode_ == Mode::AuthPending) text = "Timeout while finishing login.";
  if (mode_ == Mode::SaslResponse) text = "Disconnected for inactivity during authentication.";
  output_ += "-ERR " + std::string(text) + "\r\n";
  mode_ = Mode::Closed;
  sasl_.reset();
}

void Frontend::goodbye(std::string_view reason) {
  output_ += "-ERR " + one_line(reason) + "\r\n";
  mode_ = Mode::Closed;
  sasl_.reset();
  wipe_input();
}

std::string Frontend::take_pending_input() {
  std::string rest = in_.substr(in_pos_);
  wipe_input();
  return rest;
}

}  // namespace portier::protocols::pop3
