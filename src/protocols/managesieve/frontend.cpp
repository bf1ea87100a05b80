// ManageSieve pre-login server dialogue (spec §6.3, RFC 5804).
//
//   S: "IMPLEMENTATION" "portier"
//   S: "SIEVE" "fileinto reject envelope ... extracttext"
//   S: "NOTIFY" "mailto"
//   S: "SASL" "PLAIN LOGIN"
//   S: "STARTTLS"
//   S: "VERSION" "1.0"
//   S: OK "portier ready."
//   C: STARTTLS
//   S: OK "Begin TLS negotiation now."
//   <TLS handshake>
//   S: "IMPLEMENTATION" "portier" ... (the list again, without STARTTLS)
//   S: OK "TLS negotiation successful."
//   C: AUTHENTICATE "PLAIN" "AHVzZXIzAHBhc3M="    -> Authenticate (engine: passdb, proxy)
//   S: OK "Logged in."                             (the backend's line, verbatim)
//
// Without an initial response the challenge is a string: `""` for PLAIN,
// `"VXNlcm5hbWU6"` for LOGIN; the client answers with a string, `"*"` aborts.
// Input the client sends after the login command stays in the buffer
// untouched: on success the engine relays it to the backend
// (take_pending_input); on failure parsing resumes with it.

#include "protocols/managesieve/frontend.hpp"

#include <array>

#include <asio/ip/address.hpp>

#include "core/base64.hpp"
#include "core/secure.hpp"
#include "core/strings.hpp"
#include "protocols/managesieve/backend_login.hpp"

namespace portier::protocols::managesieve {

using login::AuthFailure;
using login::FailureType;
using login::FrontendEvent;

namespace {

constexpr std::string_view kAuthFailed = "Authentication failed.";
constexpr std::string_view kUnavailable = "Account is temporarily unavailable.";
constexpr std::string_view kPlaintextDisallowed =
    "Plaintext authentication disallowed on non-secure (SSL/TLS) connections.";
constexpr size_t kMaxSessionIdLength = 64;
// Compact the input buffer once this much of it has been consumed.
constexpr size_t kCompactThreshold = 4096;

// RFC 5804 commands that need an authenticated session.
constexpr std::array<std::string_view, 9> kPostLoginCommands = {
    "HAVESPACE",    "PUTSCRIPT",    "LISTSCRIPTS", "SETACTIVE",      "GETSCRIPT",
    "DELETESCRIPT", "RENAMESCRIPT", "CHECKSCRIPT", "UNAUTHENTICATE"};

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

// A passdb reason goes into a quoted string: keep it on one line.
std::string one_line(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    out.push_back(c < 0x20 || c == 0x7f ? ' ' : ch);
  }
  return out;
}

std::optional<uint16_t> parse_port(std::string_view s) {
  auto v = core::parse_uint(s);
  if (!v || *v == 0 || *v > 65535) return std::nullopt;
  return static_cast<uint16_t>(*v);
}

std::optional<asio::ip::address> parse_ip(std::string_view s) {
  if (core::istarts_with(s, "IPV6:")) s.remove_prefix(5);
  if (s.size() >= 2 && s.front() == '[' && s.back() == ']') s = s.substr(1, s.size() - 2);
  asio::error_code ec;
  auto a = asio::ip::make_address(std::string(s), ec);
  if (ec) return std::nullopt;
  return a;
}

bool command_is(const Command& cmd, std::string_view name) {
  return core::iequals(cmd.name, name);
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

std::string Frontend::capabilities() const {
  std::string s = "\"IMPLEMENTATION\" ";
  append_quoted(s, kImplementation);
  s += "\r\n\"SIEVE\" ";
  append_quoted(s, kSieveExtensions);
  s += "\r\n\"NOTIFY\" \"mailto\"\r\n";
  std::string mechs;
  const bool cleartext = cleartext_allowed();
  for (const auto& m : settings_.mechanisms) {
    if (!cleartext && is_cleartext_mech(m)) continue;
    if (!mechs.empty()) mechs += ' ';
    mechs += m;
  }
  s += "\"SASL\" ";
  append_quoted(s, mechs);
  s += "\r\n";
  if (client_.starttls_available()) s += "\"STARTTLS\"\r\n";
  s += "\"VERSION\" \"1.0\"\r\n";
  if (client_.trusted) s += "\"XCLIENT\"\r\n";
  return s;
}

void Frontend::start() {
  // Implicit TLS: the end client is on TLS unless a trusted hop says otherwise later.
  if (client_.tls) client_.end_client_tls = true;
  output_ += capabilities();
  output_ += "OK ";
  append_quoted(output_, one_line(settings_.greeting));
  output_ += "\r\n";
}

void Frontend::feed(std::string_view data) {
  if (mode_ == Mode::Closed) return;
  in_.append(data);
}

void Frontend::no(std::string_view text, std::string_view code) {
  output_ += "NO ";
  if (!code.empty()) {
    output_ += '(';
    output_ += code;
    output_ += ") ";
  }
  append_string(output_, text);
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

Frontend::Event Frontend::close_with(std::string_view bye_text) {
  set_close_reason(bye_text);
  output_ += "BYE ";
  append_quoted(output_, bye_text);
  output_ += "\r\n";
  mode_ = Mode::Closed;
  sasl_.reset();
  wipe_input();
  return FrontendEvent::Close;
}

Frontend::Event Frontend::invalid(std::string_view reply_text) {
  no(reply_text);
  if (settings_.max_invalid_commands > 0 && ++invalid_commands_ >= settings_.max_invalid_commands)
    return close_with("Too many invalid commands.");
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
    case CommandParser::Result::EmptyLine:
      return std::nullopt;
    case CommandParser::Result::Error:
      return on_parse_error();
    case CommandParser::Result::Command: {
      Command& cmd = parser_.command();
      Event ev = dispatch(cmd);
      for (auto& a : cmd.args) core::secure_zero(a.value);  // SASL initial response
      return ev;
    }
  }
  return std::nullopt;
}

Frontend::Event Frontend::on_parse_error() {
  switch (parser_.error()) {
    case ParseError::LineTooLong:
      return close_with("Too long command line.");
    case ParseError::LiteralTooLarge:
      // The client sends literal data without waiting: nothing to resync on.
      return close_with("Too long literal.");
    case ParseError::Syntax:
    case ParseError::None:
      break;
  }
  return invalid("Error in MANAGESIEVE command: " + parser_.error_text() + ".");
}

Frontend::Event Frontend::dispatch(Command& cmd) {
  if (command_is(cmd, "CAPABILITY")) return cmd_capability(cmd);
  if (command_is(cmd, "AUTHENTICATE")) return cmd_authenticate(cmd);
  if (command_is(cmd, "STARTTLS")) return cmd_starttls(cmd);
  if (command_is(cmd, "NOOP")) return cmd_noop(cmd);
  if (command_is(cmd, "XCLIENT")) return cmd_xclient(cmd);
  if (command_is(cmd, "LOGOUT")) {
    if (!cmd.args.empty()) return invalid("Error in MANAGESIEVE command: LOGOUT takes no arguments.");
    output_ += "OK \"Logout completed.\"\r\n";
    mode_ = Mode::Closed;
    wipe_input();
    return FrontendEvent::Close;
  }
  for (std::string_view name : kPostLoginCommands)
    if (command_is(cmd, name)) return invalid("Authentication required.");
  return invalid("Unknown command.");
}

Frontend::Event Frontend::cmd_capability(const Command& cmd) {
  if (!cmd.args.empty())
    return invalid("Error in MANAGESIEVE command: CAPABILITY takes no arguments.");
  output_ += capabilities();
  output_ += "OK \"Capability completed.\"\r\n";
  return std::nullopt;
}

Frontend::Event Frontend::cmd_noop(const Command& cmd) {
  if (cmd.args.empty()) {
    output_ += "OK \"NOOP Completed\"\r\n";
    return std::nullopt;
  }
  if (cmd.args.size() != 1 || cmd.args[0].type != Arg::Type::String)
    return invalid("Error in MANAGESIEVE command: NOOP takes one optional string.");
  // RFC 5804 §2.11: the tag comes back in a TAG response code.
  output_ += "OK (TAG ";
  append_string(output_, cmd.args[0].value);
  output_ += ") \"Done\"\r\n";
  return std::nullopt;
}

Frontend::Event Frontend::cmd_starttls(const Command& cmd) {
  if (!cmd.args.empty())
    return invalid("Error in MANAGESIEVE command: STARTTLS takes no arguments.");
  if (client_.tls) {
    no("TLS is already active.");
    return std::nullopt;
  }
  if (!client_.tls_configured) {
    no("TLS support isn't enabled.");
    return std::nullopt;
  }
  output_ += "OK \"Begin TLS negotiation now.\"\r\n";
  // Anything pipelined after STARTTLS arrived in plaintext and must not be
  // executed as if it came over TLS (CVE-2011-0411 style command injection).
  wipe_input();
  parser_.reset();
  return FrontendEvent::StartTls;
}

void Frontend::tls_started() {
  client_.end_client_tls = true;
  wipe_input();  // nothing read before the handshake may survive it
  parser_.reset();
  // RFC 5804 §2.2: the server sends its capabilities again after TLS.
  output_ += capabilities();
  output_ += "OK \"TLS negotiation successful.\"\r\n";
}

Frontend::Event Frontend::cmd_authenticate(Command& cmd) {
  if (cmd.args.empty() || cmd.args.size() > 2)
    return invalid("Error in MANAGESIEVE command: AUTHENTICATE needs a mechanism.");
  if (cmd.args.size() == 2 && cmd.args[1].type != Arg::Type::String)
    return invalid("Error in MANAGESIEVE command: the initial response must be a string.");
  const std::string mech = core::to_upper(cmd.args[0].value);
  std::unique_ptr<sasl::ServerMech> server;
  if (mech_configured(mech)) server = sasl::make_server_mech(mech);
  if (!server) {
    no("Unsupported authentication mechanism.");
    return std::nullopt;
  }
  if (is_cleartext_mech(mech) && !cleartext_allowed()) {
    no(kPlaintextDisallowed, "ENCRYPT-NEEDED");
    if (settings_.max_invalid_commands > 0 &&
        ++invalid_commands_ >= settings_.max_invalid_commands)
      return close_with("Too many invalid commands.");
    return std::nullopt;
  }

  std::optional<std::string> ir;
  if (cmd.args.size() == 2) {
    // An empty string is an empty initial response.
    ir = core::base64_decode(cmd.args[1].value);
    if (!ir) {
      no("Invalid base64 data in initial response.");
      return std::nullopt;
    }
  }
  // LOGIN has no initial response: treat an empty one as none, so the user
  // name is asked for.
  if (ir && ir->empty() && mech == "LOGIN") ir.reset();
  sasl_ = std::move(server);
  sasl::Step step = ir ? sasl_->start(std::string_view(*ir)) : sasl_->start(std::nullopt);
  if (ir) core::secure_zero(*ir);
  return sasl_result(step);
}

Frontend::Event Frontend::sasl_result(const sasl::Step& step) {
  switch (step.status) {
    case sasl::Status::Continue:
      // RFC 5804 continue-req: the challenge as a (base64) string.
      output_ += '"';
      output_ += core::base64_encode(step.challenge);
      output_ += "\"\r\n";
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
  no(kAuthFailed);
  return std::nullopt;
}

Frontend::Event Frontend::next_sasl_response() {
  std::string_view avail = std::string_view(in_).substr(in_pos_);
  if (avail.empty()) return FrontendEvent::NeedInput;
  size_t used = 0;
  const auto r = parser_.parse_string_line(avail, used);
  consume(used);
  switch (r) {
    case CommandParser::Result::NeedMore:
      return FrontendEvent::NeedInput;
    case CommandParser::Result::Error:
      if (parser_.error() == ParseError::LineTooLong) return close_with("Too long command line.");
      if (parser_.error() == ParseError::LiteralTooLarge) return close_with("Too long literal.");
      sasl_.reset();
      mode_ = Mode::Commands;
      no("Invalid SASL response: expected a string.");
      return std::nullopt;
    case CommandParser::Result::EmptyLine:
    case CommandParser::Result::Command:
      break;
  }
  std::string& text = parser_.command().args[0].value;
  if (text == "*") {
    sasl_.reset();
    mode_ = Mode::Commands;
    no("Authentication aborted by client.");
    return std::nullopt;
  }
  std::optional<std::string> response = core::base64_decode(text);
  core::secure_zero(text);
  if (!response) {
    sasl_.reset();
    mode_ = Mode::Commands;
    no("Invalid base64 data in continued response.");
    return std::nullopt;
  }
  sasl::Step step = sasl_->step(*response);
  core::secure_zero(*response);
  return sasl_result(step);
}

Frontend::Event Frontend::cmd_xclient(const Command& cmd) {
  if (!client_.trusted) {
    no("You are not from trusted IP.");
    return std::nullopt;
  }
  // Validate everything first: a bad argument changes nothing.
  for (const Arg& a : cmd.args)
    if (a.type != Arg::Type::Atom || a.value.find('=') == std::string::npos)
      return invalid("Invalid XCLIENT arguments.");
  for (const Arg& a : cmd.args) {
    const size_t eq = a.value.find('=');
    const std::string key = core::to_upper(std::string_view(a.value).substr(0, eq));
    const std::string_view value = std::string_view(a.value).substr(eq + 1);
    if (key == "ADDR") {
      if (auto ip = parse_ip(value)) client_.remote_ip = *ip;
    } else if (key == "PORT") {
      if (auto p = parse_port(value)) client_.remote_port = *p;
    } else if (key == "DESTADDR") {
      if (auto ip = parse_ip(value)) client_.local_ip = *ip;
    } else if (key == "DESTPORT") {
      if (auto p = parse_port(value)) client_.local_port = *p;
    } else if (key == "SESSION") {
      if (!value.empty() && value.size() <= kMaxSessionIdLength && printable_ascii(value))
        client_.session_id.assign(value);
    } else if (key == "TTL") {
      auto v = core::parse_uint(value);
      if (v && *v > 0 && *v <= 0xffffffffULL) client_.proxy_ttl = static_cast<unsigned>(*v);
    } else if (key == "CLIENT-TRANSPORT") {
      client_.end_client_tls = value.starts_with("TLS");
    }
    // Anything else (DESTNAME, FORWARD, ...) is accepted and ignored.
  }
  output_ += "OK \"Updated\"\r\n";
  return std::nullopt;
}

sasl::Credentials Frontend::take_credentials() { return std::move(credentials_); }

void Frontend::auth_failed(AuthFailure kind, std::string_view reason) {
  credentials_ = sasl::Credentials{};
  mode_ = Mode::Commands;
  switch (kind) {
    case AuthFailure::Failed:
      no(reason.empty() ? std::string(kAuthFailed) : one_line(reason));
      break;
    case AuthFailure::TempFail:
      no("Temporary authentication failure.", "TRYLATER");
      break;
    case AuthFailure::Disabled:
      no(reason.empty() ? std::string("Login disabled for this user") : one_line(reason));
      break;
    case AuthFailure::CleartextDenied:
      no(kPlaintextDisallowed, "ENCRYPT-NEEDED");
      break;
    case AuthFailure::Limit:
      no(reason.empty() ? std::string("Too many connections for this user.") : one_line(reason),
         "LIMIT/CONNECTIONS");
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
  // The one switch that maps a backend failure to the ManageSieve client reply (§6.2).
  switch (f.type) {
    case FailureType::Connect:
    case FailureType::Internal:
    case FailureType::Remote:
    case FailureType::Protocol:
    case FailureType::AuthRedirect:  // referrals are not followed in v1
    case FailureType::kCount:
      no(kUnavailable, "TRYLATER");
      return;
    case FailureType::InternalConfig:
    case FailureType::RemoteConfig:
    case FailureType::AuthNotReplied:
      no(kUnavailable, "TRYLATER/NORETRY");
      return;
    case FailureType::AuthTempfail:
    case FailureType::AuthReplied:
    case FailureType::LimitReached:
      if (!f.client_reply.empty()) {
        output_ += f.client_reply;
      } else if (f.type == FailureType::AuthReplied) {
        no(kAuthFailed);
      } else {
        no(kUnavailable, "TRYLATER");
      }
      return;
  }
}

void Frontend::timed_out() {
  output_ += mode_ == Mode::AuthPending ? "BYE \"Timeout while finishing login.\"\r\n"
                                        : "BYE \"Disconnected for inactivity.\"\r\n";
  mode_ = Mode::Closed;
  sasl_.reset();
}

void Frontend::goodbye(std::string_view reason) {
  close_with(one_line(reason));
}

std::string Frontend::take_pending_input() {
  std::string rest = in_.substr(in_pos_);
  wipe_input();
  return rest;
}

}  // namespace portier::protocols::managesieve
