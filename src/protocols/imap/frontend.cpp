// IMAP pre-login server dialogue (spec §3.8).
//
//   S: * OK [CAPABILITY IMAP4rev1 SASL-IR ... STARTTLS AUTH=PLAIN AUTH=LOGIN] portier ready.
//   C: a0 CAPABILITY
//   S: * CAPABILITY IMAP4rev1 SASL-IR ... AUTH=LOGIN
//   S: a0 OK Pre-login capabilities listed, post-login capabilities have more.
//   C: a1 ID ("name" "client")
//   S: * ID NIL
//   S: a1 OK ID completed.
//   C: a2 AUTHENTICATE PLAIN
//   S: +
//   C: AGFsaWNlAHNlY3JldA==                  -> Authenticate (engine: passdb, proxy)
//   S: a2 OK [CAPABILITY ...] Logged in      (rendered by the BackendLogin)
//
// Input the client sends after the login command stays in the buffer
// untouched: on success the engine relays it to the backend
// (take_pending_input); on failure parsing resumes with it.

#include "protocols/imap/frontend.hpp"

#include <asio/ip/address.hpp>

#include "core/base64.hpp"
#include "core/secure.hpp"
#include "login/command_budget.hpp"
#include "core/strings.hpp"
#include "protocols/imap/backend_login.hpp"

namespace portier::protocols::imap {

using login::AuthFailure;
using login::FailureType;
using login::FrontendEvent;

namespace {

constexpr std::string_view kBadCommand = "BAD Error in IMAP command received by server.";
constexpr std::string_view kAuthFailed = "NO [AUTHENTICATIONFAILED] Authentication failed.";
constexpr std::string_view kPrivacyRequired =
    "NO [PRIVACYREQUIRED] Plaintext authentication disallowed on non-secure (SSL/TLS) "
    "connections.";
constexpr std::string_view kPasswordExposedAlert =
    "* BAD [ALERT] Plaintext authentication not allowed without SSL/TLS, but your client did "
    "it anyway. If anyone was listening, the password was exposed.\r\n";
constexpr std::string_view kUnavailable = "NO [UNAVAILABLE] Account is temporarily unavailable.";
constexpr std::string_view kServerBug = "NO [SERVERBUG] Account is temporarily unavailable.";
constexpr size_t kMaxSessionIdLength = 64;
// Compact the input buffer once this much of it has been consumed.
constexpr size_t kCompactThreshold = 4096;

bool is_cleartext_mech(std::string_view mech) {
  return core::iequals(mech, "PLAIN") || core::iequals(mech, "LOGIN");
}

bool printable_ascii(std::string_view s) {
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c >= 0x7f) return false;
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

// Dovecot's rule for a reason text: a leading resp-code is kept as given,
// otherwise the text is an [ALERT].
std::string reason_reply(std::string_view reason) {
  std::string r = one_line(reason);
  return !r.empty() && r[0] == '[' ? "NO " + r : "NO [ALERT] " + r;
}

std::optional<uint16_t> parse_port(std::string_view s) {
  auto v = core::parse_uint(s);
  if (!v || *v == 0 || *v > 65535) return std::nullopt;
  return static_cast<uint16_t>(*v);
}

std::optional<asio::ip::address> parse_ip(std::string_view s) {
  if (s.size() >= 2 && s.front() == '[' && s.back() == ']') s = s.substr(1, s.size() - 2);
  asio::error_code ec;
  auto a = asio::ip::make_address(std::string(s), ec);
  if (ec) return std::nullopt;
  return a;
}

}  // namespace

Frontend::Frontend(const login::FrontendSettings& settings, login::ClientInfo& client)
    : settings_(settings),
      client_(client),
      parser_(CommandParser::Limits{settings.max_line_length, settings.max_literal_size,
                                    settings.max_command_size}) {
  if (settings_.greeting.empty()) settings_.greeting = "portier ready.";
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

const std::string& Frontend::capabilities() {
  // The list depends only on two bits of connection state.
  const int key = (client_.starttls_available() ? 1 : 0) | (cleartext_allowed() ? 2 : 0);
  if (key == caps_key_) return caps_;
  caps_key_ = key;
  caps_.assign(kBaseCapabilities);
  if (client_.starttls_available()) caps_ += " STARTTLS";
  const bool cleartext = cleartext_allowed();
  if (!cleartext) caps_ += " LOGINDISABLED";
  for (const auto& m : settings_.mechanisms) {
    if (!cleartext && is_cleartext_mech(m)) continue;
    caps_ += " AUTH=";
    caps_ += m;
  }
  return caps_;
}

void Frontend::start() {
  // Implicit TLS: the end client is on TLS unless a trusted hop says otherwise later.
  if (client_.tls) client_.end_client_tls = true;
  output_ += "* OK [CAPABILITY ";
  output_ += capabilities();
  output_ += "] ";
  output_ += settings_.greeting;
  output_ += "\r\n";
}

void Frontend::feed(std::string_view data) {
  if (mode_ == Mode::Closed) return;
  in_.append(data);
}

void Frontend::reply(std::string_view tag, std::string_view text) {
  output_ += tag.empty() ? std::string_view("*") : tag;
  output_ += ' ';
  output_ += text;
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
    Event ev;
    switch (mode_) {
      case Mode::Closed:
        return FrontendEvent::Close;
      case Mode::AuthPending:
        // The login is with the engine; later input stays pending.
        return FrontendEvent::NeedInput;
      case Mode::SaslResponse:
        ev = next_sasl_response();
        break;
      case Mode::Commands:
        ev = next_command();
        break;
    }
    if (ev) return *ev;
  }
}

Frontend::Event Frontend::close_with(std::string_view bye_line) {
  // The log says what Dovecot's does, whatever the protocol's wording.
  if (bye_line.find("Too many invalid") != std::string_view::npos)
    set_close_reason("Too many invalid commands");
  else if (bye_line.starts_with("* BYE "))
    set_close_reason(bye_line.substr(6));
  output_ += bye_line;
  mode_ = Mode::Closed;
  sasl_.reset();
  wipe_input();
  return FrontendEvent::Close;
}

Frontend::Event Frontend::bad_command(std::string_view tag) {
  if (settings_.max_invalid_commands > 0 && ++invalid_commands_ >= settings_.max_invalid_commands)
    return close_with("* BYE Too many invalid IMAP commands.\r\n");
  reply(tag, kBadCommand);
  return std::nullopt;
}

Frontend::Event Frontend::privacy_required(std::string_view tag, bool password_sent) {
  if (password_sent) output_ += kPasswordExposedAlert;
  reply(tag, kPrivacyRequired);
  if (settings_.max_invalid_commands > 0 && ++invalid_commands_ >= settings_.max_invalid_commands)
    return close_with("* BYE Too many invalid IMAP commands.\r\n");
  return std::nullopt;
}

Frontend::Event Frontend::next_command() {
  std::string_view avail = std::string_view(in_).substr(in_pos_);
  if (avail.empty()) return FrontendEvent::NeedInput;
  size_t used = 0;
  const auto r = parser_.parse(avail, used);
  consume(used);
  switch (r) {
    case CommandParser::Result::NeedMore:
      return FrontendEvent::NeedInput;
    case CommandParser::Result::Continuation:
      output_ += "+ OK\r\n";
      return std::nullopt;
    case CommandParser::Result::EmptyLine:
      return std::nullopt;
    case CommandParser::Result::Error:
      return on_parse_error();
    case CommandParser::Result::Command: {
      Command& cmd = parser_.command();
      Event ev = dispatch(cmd);
      for (auto& a : cmd.args) core::secure_zero(a.value);  // LOGIN password, SASL IR
      return ev;
    }
  }
  return std::nullopt;
}

Frontend::Event Frontend::on_parse_error() {
  const std::string tag = parser_.error_tag();
  switch (parser_.error()) {
    case ParseError::LineTooLong:
      return close_with("* BYE Too long command line.\r\n");
    case ParseError::LiteralTooLarge:
      if (parser_.fatal()) {
        reply(tag, "BAD Literal too large.");
        return close_with("* BYE Too long literal.\r\n");
      }
      reply(tag, "BAD Literal too large.");
      if (settings_.max_invalid_commands > 0 &&
          ++invalid_commands_ >= settings_.max_invalid_commands)
        return close_with("* BYE Too many invalid IMAP commands.\r\n");
      return std::nullopt;
    case ParseError::Syntax:
    case ParseError::None:
      break;
  }
  return bad_command(tag);
}

Frontend::Event Frontend::dispatch(Command& cmd) {
  if (command_is(cmd, "CAPABILITY")) return cmd_capability(cmd);
  if (command_is(cmd, "NOOP")) {
    reply(cmd.tag, "OK NOOP completed.");
    return std::nullopt;
  }
  if (command_is(cmd, "LOGOUT")) {
    output_ += "* BYE Logging out\r\n";
    reply(cmd.tag, "OK Logout completed.");
    return close_with("");
  }
  if (command_is(cmd, "ID")) return cmd_id(cmd);
  if (command_is(cmd, "ENABLE")) {
    output_ += "* ENABLED\r\n";
    reply(cmd.tag, "OK ENABLE ignored in non-authenticated state.");
    return std::nullopt;
  }
  if (command_is(cmd, "STARTTLS")) return cmd_starttls(cmd);
  if (command_is(cmd, "LOGIN")) return cmd_login(cmd);
  if (command_is(cmd, "AUTHENTICATE")) return cmd_authenticate(cmd);
  return bad_command(cmd.tag);
}

Frontend::Event Frontend::cmd_capability(const Command& cmd) {
  // After STARTTLS a client must ask again anyway, so only a CAPABILITY
  // before it means "this client ignores the banner's resp-code" (§3.5).
  if (!did_starttls_) client_sent_capability_ = true;
  output_ += "* CAPABILITY ";
  output_ += capabilities();
  output_ += "\r\n";
  reply(cmd.tag, "OK Pre-login capabilities listed, post-login capabilities have more.");
  return std::nullopt;
}

Frontend::Event Frontend::cmd_starttls(const Command& cmd) {
  if (client_.tls) {
    reply(cmd.tag, "BAD TLS is already active.");
    return std::nullopt;
  }
  if (!client_.tls_configured) {
    reply(cmd.tag, "BAD TLS support isn't enabled.");
    return std::nullopt;
  }
  reply(cmd.tag, "OK Begin TLS negotiation now.");
  // Anything pipelined after STARTTLS arrived in plaintext and must not be
  // executed as if it came over TLS (CVE-2011-0411 style command injection).
  wipe_input();
  parser_.reset();
  return FrontendEvent::StartTls;
}

void Frontend::tls_started() {
  did_starttls_ = true;
  client_.end_client_tls = true;
  wipe_input();  // nothing read before the handshake may survive it
  parser_.reset();
}

Frontend::Event Frontend::cmd_login(Command& cmd) {
  if (cmd.args.size() != 2 || !cmd.args[0].is_astring() || !cmd.args[1].is_astring())
    return bad_command(cmd.tag);
  if (!cleartext_allowed()) return privacy_required(cmd.tag, true);
  tag_ = cmd.tag;
  credentials_ = sasl::Credentials{};
  credentials_.mech = "PLAIN";
  credentials_.authcid = cmd.args[0].value;
  credentials_.password = cmd.args[1].value;
  mode_ = Mode::AuthPending;
  return FrontendEvent::Authenticate;
}

Frontend::Event Frontend::cmd_authenticate(Command& cmd) {
  if (cmd.args.empty() || cmd.args.size() > 2 || cmd.args[0].type != Arg::Type::Atom ||
      (cmd.args.size() == 2 && cmd.args[1].type != Arg::Type::Atom))
    return bad_command(cmd.tag);
  const std::string mech = core::to_upper(cmd.args[0].value);
  std::unique_ptr<sasl::ServerMech> server;
  if (mech_configured(mech)) server = sasl::make_server_mech(mech);
  if (!server) {
    reply(cmd.tag, "NO Unsupported authentication mechanism.");
    return std::nullopt;
  }
  const bool has_ir = cmd.args.size() == 2;
  if (is_cleartext_mech(mech) && !cleartext_allowed())
    return privacy_required(cmd.tag, has_ir && cmd.args[1].value != "=");

  std::optional<std::string> ir;
  if (has_ir) {
    // SASL-IR (RFC 4959): "=" is an empty initial response.
    if (cmd.args[1].value == "=") {
      ir.emplace();
    } else {
      ir = core::base64_decode(cmd.args[1].value);
      if (!ir) {
        reply(cmd.tag, "BAD Invalid base64 data in initial response");
        return std::nullopt;
      }
    }
  }
  // LOGIN has no initial response: treat "=" as none, so the user name is
  // asked for (Dovecot's LOGIN mechanism does the same).
  if (ir && ir->empty() && mech == "LOGIN") ir.reset();
  tag_ = cmd.tag;
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
  reply(tag_, kAuthFailed);
  return std::nullopt;
}

Frontend::Event Frontend::next_sasl_response() {
  std::string_view avail = std::string_view(in_).substr(in_pos_);
  size_t lf = avail.find('\n');
  if (lf == std::string_view::npos) {
    if (avail.size() > login::line_limit(settings_))
      return close_with("* BYE Too long command line.\r\n");
    return FrontendEvent::NeedInput;
  }
  if (lf + 1 > login::line_limit(settings_)) return close_with("* BYE Too long command line.\r\n");
  std::string line(avail.substr(0, lf));
  if (!line.empty() && line.back() == '\r') line.pop_back();
  consume(lf + 1);

  if (line == "*") {
    sasl_.reset();
    mode_ = Mode::Commands;
    reply(tag_, "BAD Authentication aborted by client.");
    return std::nullopt;
  }
  std::optional<std::string> response = core::base64_decode(line);
  core::secure_zero(line);
  if (!response) {
    sasl_.reset();
    mode_ = Mode::Commands;
    reply(tag_, "BAD Invalid base64 data in continued response");
    return std::nullopt;
  }
  sasl::Step step = sasl_->step(*response);
  core::secure_zero(*response);
  return sasl_result(step);
}

Frontend::Event Frontend::cmd_id(const Command& cmd) {
  // The parser streams ID (Dovecot's list -> key -> value): cmd.id holds the
  // verdict and the first few x-* pairs, never the whole command.
  if (!cmd.id) return bad_command(cmd.tag);  // `ID` without arguments
  const IdParams& id = *cmd.id;
  if (!id.valid) {
    reply(cmd.tag, "BAD Invalid ID parameters");
    if (settings_.max_invalid_commands > 0 &&
        ++invalid_commands_ >= settings_.max_invalid_commands)
      return close_with("* BYE Too many invalid IMAP commands.\r\n");
    return std::nullopt;
  }
  // Only a trusted hop may set these, and only with its first ID.
  if (client_.trusted && !id_seen_) {
    for (const IdPair& p : id.pairs)
      if (!p.nil && !p.truncated) apply_trusted_id(p.key, p.value);
  }
  id_seen_ = true;
  output_ += "* ID NIL\r\n";
  reply(cmd.tag, client_.trusted ? "OK Trusted ID completed." : "OK ID completed.");
  return std::nullopt;
}

void Frontend::apply_trusted_id(std::string_view key, std::string_view value) {
  if (core::iequals(key, "x-originating-ip")) {
    if (auto ip = parse_ip(value)) client_.remote_ip = *ip;
  } else if (core::iequals(key, "x-originating-port")) {
    if (auto p = parse_port(value)) client_.remote_port = *p;
  } else if (core::iequals(key, "x-connected-ip")) {
    if (auto ip = parse_ip(value)) client_.local_ip = *ip;
  } else if (core::iequals(key, "x-connected-port")) {
    if (auto p = parse_port(value)) client_.local_port = *p;
  } else if (core::iequals(key, "x-session-id") || core::iequals(key, "x-session-ext-id")) {
    if (!value.empty() && value.size() <= kMaxSessionIdLength && printable_ascii(value))
      client_.session_id.assign(value);
  } else if (core::iequals(key, "x-proxy-ttl")) {
    auto v = core::parse_uint(value);
    if (v && *v > 0 && *v <= 0xffffffffULL) client_.proxy_ttl = static_cast<unsigned>(*v);
  } else if (core::iequals(key, "x-client-transport")) {
    client_.end_client_tls = value.starts_with("TLS");
  }
}

sasl::Credentials Frontend::take_credentials() { return std::move(credentials_); }

void Frontend::auth_failed(AuthFailure kind, std::string_view reason) {
  credentials_ = sasl::Credentials{};
  mode_ = Mode::Commands;
  switch (kind) {
    case AuthFailure::Failed:
      reply(tag_, reason.empty() ? std::string(kAuthFailed) : reason_reply(reason));
      break;
    case AuthFailure::TempFail:
      reply(tag_, "NO [UNAVAILABLE] Temporary authentication failure.");
      break;
    case AuthFailure::Disabled:
      reply(tag_, reason.empty() ? std::string("NO [CONTACTADMIN] Login disabled for this user")
                                 : reason_reply(reason));
      break;
    case AuthFailure::CleartextDenied:
      reply(tag_, kPrivacyRequired);
      break;
    case AuthFailure::Limit:
      reply(tag_, "NO [LIMIT] Too many sessions for this user.");
      break;
  }
}

std::unique_ptr<login::BackendLogin> Frontend::make_backend_login(
    const login::BackendLoginParams& p) {
  return std::make_unique<BackendLogin>(p, tag_, client_sent_capability_);
}

void Frontend::proxy_failed(const login::ProxyFailure& f) {
  credentials_ = sasl::Credentials{};
  mode_ = Mode::Commands;
  // The one switch that maps a backend failure to the IMAP client reply (§3.6).
  switch (f.type) {
    case FailureType::Connect:
    case FailureType::Internal:
    case FailureType::Remote:
    case FailureType::Protocol:
    case FailureType::AuthRedirect:  // referrals are not followed in v1
    case FailureType::kCount:
      reply(tag_, kUnavailable);
      return;
    case FailureType::RemoteConfig:
    case FailureType::InternalConfig:
    case FailureType::AuthNotReplied:
      reply(tag_, kServerBug);
      return;
    case FailureType::AuthTempfail:
    case FailureType::AuthReplied:
    case FailureType::LimitReached:
      if (!f.client_reply.empty()) {
        output_ += f.client_reply;
      } else {
        reply(tag_, f.type == FailureType::AuthReplied ? kAuthFailed : kUnavailable);
      }
      return;
  }
}

void Frontend::timed_out() {
  output_ += mode_ == Mode::AuthPending ? "* BYE Timeout while finishing login.\r\n"
                                        : "* BYE Disconnected for inactivity.\r\n";
  mode_ = Mode::Closed;
  sasl_.reset();
}

void Frontend::goodbye(std::string_view reason) {
  output_ += "* BYE ";
  output_ += reason;
  output_ += "\r\n";
  mode_ = Mode::Closed;
  sasl_.reset();
}

std::string Frontend::take_pending_input() {
  std::string rest = in_.substr(in_pos_);
  wipe_input();
  return rest;
}

}  // namespace portier::protocols::imap
