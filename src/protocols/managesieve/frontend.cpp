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
#include "protocols/common/referral.hpp"

#include <array>

#include "core/secure.hpp"
#include "core/strings.hpp"
#include "core/text.hpp"
#include "login/client_update.hpp"
#include "protocols/managesieve/backend_login.hpp"

namespace portier::protocols::managesieve {

namespace {

constexpr common::SaslTexts kSaslTexts{
    .failed = "Authentication failed.",
    .unsupported = "Unsupported authentication mechanism.",
    .cleartext_denied = "Plaintext authentication disallowed on non-secure (SSL/TLS) connections.",
    .bad_initial_base64 = "Invalid base64 data in initial response.",
    .bad_base64 = "Invalid base64 data in continued response.",
    .aborted = "Authentication aborted by client.",
};
// no(..., "TRYLATER") and the like, as whole lines.
constexpr common::FailureTexts kFailureTexts{
    "NO (TRYLATER) \"Account is temporarily unavailable.\"", "NO \"Authentication failed.\"",
    "NO (TRYLATER/NORETRY) \"Account is temporarily unavailable.\""};

// RFC 5804 commands that need an authenticated session.
constexpr std::array<std::string_view, 9> kPostLoginCommands = {
    "HAVESPACE",    "PUTSCRIPT",    "LISTSCRIPTS", "SETACTIVE",      "GETSCRIPT",
    "DELETESCRIPT", "RENAMESCRIPT", "CHECKSCRIPT", "UNAUTHENTICATE"};

bool command_is(const Command& cmd, std::string_view name) {
  return core::iequals(cmd.name, name);
}

}  // namespace

Frontend::Frontend(const login::FrontendSettings& settings, login::ClientInfo& client)
    : FrontendBase(settings, client, kSaslTexts, kFailureTexts),
      parser_(common::parser_limits<CommandParser::Limits>(settings)) {}

std::unique_ptr<login::Frontend> make_frontend(const login::FrontendSettings& settings,
                                               login::ClientInfo& client) {
  return std::make_unique<Frontend>(settings, client);
}

std::string Frontend::capabilities() const {
  std::string s = "\"IMPLEMENTATION\" ";
  append_quoted(s, kImplementation);
  s += "\r\n\"SIEVE\" ";
  append_quoted(s, kSieveExtensions);
  s += "\r\n\"NOTIFY\" \"mailto\"\r\n";
  std::string mechs;
  for (const auto& m : settings_.mechanisms) {
    if (!mech_advertised(m)) continue;
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

void Frontend::greet() {
  output_ += capabilities();
  output_ += "OK ";
  append_quoted(output_, core::one_line(settings_.greeting));
  output_ += "\r\n";
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

Frontend::Event Frontend::parse() {
  if (mode_ == Mode::SaslResponse) return next_sasl_response();
  return next_command(
      parser_, [this](Command& cmd) { return dispatch(cmd); }, [this] { return on_parse_error(); });
}

Frontend::Event Frontend::close_with(std::string_view bye_text) {
  set_close_reason(bye_text);
  output_ += "BYE ";
  append_quoted(output_, bye_text);
  output_ += "\r\n";
  return closed();
}

Frontend::Event Frontend::invalid(std::string_view reply_text) {
  no(reply_text);
  if (invalid_limit_reached()) return close_with("Too many invalid commands.");
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
    return closed();
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
  // The texts are those no() and the OK reply would render.
  Event ev = start_tls([this](std::string_view line) { reply_line(line); },
                       "NO \"TLS is already active.\"", "NO \"TLS support isn't enabled.\"",
                       "OK \"Begin TLS negotiation now.\"");
  if (ev) parser_.reset();
  return ev;
}

void Frontend::on_tls_started() {
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
  std::optional<std::string_view> ir;  // plain base64: an empty string is an empty response
  if (cmd.args.size() == 2) ir = cmd.args[1].value;
  return sasl_begin(cmd.args[0].value, ir, sasl::IrSyntax::Base64Only);
}

void Frontend::send_challenge(std::string_view b64) {
  // RFC 5804 continue-req: the challenge as a (base64) string.
  output_ += '"';
  output_ += b64;
  output_ += "\"\r\n";
}

Frontend::Event Frontend::sasl_refused(sasl::Outcome outcome, std::string_view text) {
  if (outcome != sasl::Outcome::CleartextDenied) {
    no(text);
    return std::nullopt;
  }
  no(text, "ENCRYPT-NEEDED");
  if (invalid_limit_reached()) return close_with("Too many invalid commands.");
  return std::nullopt;
}

Frontend::Event Frontend::next_sasl_response() {
  if (in_.avail().empty()) return FrontendEvent::NeedInput;
  parser_.set_wide_string_line(sasl_response_limit() > login::line_limit(settings_));
  auto string_line = [](auto& p, auto in, size_t& used) { return p.parse_string_line(in, used); };
  switch (parse_input(parser_, string_line)) {
    case CommandParser::Result::NeedMore:
      return FrontendEvent::NeedInput;
    case CommandParser::Result::Error:
      if (parser_.error() == ParseError::LineTooLong) return close_with("Too long command line.");
      if (parser_.error() == ParseError::LiteralTooLarge) return close_with("Too long literal.");
      sasl_cancel();
      no("Invalid SASL response: expected a string.");
      return std::nullopt;
    case CommandParser::Result::EmptyLine:
    case CommandParser::Result::Command:
      break;
  }
  std::string& text = parser_.command().args[0].value;
  Event ev = sasl_respond(text);
  core::secure_zero(text);
  return ev;
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
  login::ClientUpdate update(client_);
  for (const Arg& a : cmd.args) {
    const size_t eq = a.value.find('=');
    const std::string_view v = std::string_view(a.value);
    // Anything else (DESTNAME, FORWARD, ...) is accepted and ignored.
    if (auto field = login::ClientUpdate::xclient_field(v.substr(0, eq)))
      update.set(*field, v.substr(eq + 1));
  }
  if (!update.apply(client_)) return invalid("Invalid XCLIENT arguments.");
  output_ += "OK \"Updated\"\r\n";
  return std::nullopt;
}

void Frontend::refuse_login(AuthFailure kind, std::string_view reason) {
  switch (kind) {
    case AuthFailure::Failed:
      no(reason.empty() ? std::string(kSaslTexts.failed) : core::one_line(reason));
      break;
    case AuthFailure::TempFail:
      no("Temporary authentication failure.", "TRYLATER");
      break;
    case AuthFailure::Disabled:
      no(reason.empty() ? std::string("Login disabled for this user") : core::one_line(reason));
      break;
    case AuthFailure::CleartextDenied:
      no(kSaslTexts.cleartext_denied, "ENCRYPT-NEEDED");
      break;
    case AuthFailure::Limit:
      no(reason.empty() ? std::string("Too many connections for this user.") : core::one_line(reason),
         "LIMIT/CONNECTIONS");
      break;
  }
}

bool Frontend::refer(const login::Referral& r) {
  // RFC 5804 REFERRAL response code: NO, or OK and the session ends.
  output_ += r.nologin ? "NO" : "OK";
  output_ += " (REFERRAL sieve://" + common::referral_target(r, 4190) + ") ";
  append_string(output_, core::one_line(r.reason));
  output_ += "\r\n";
  return !r.nologin;
}

std::unique_ptr<login::BackendLogin> Frontend::make_backend_login(
    const login::BackendLoginParams& p) {
  return std::make_unique<BackendLogin>(p);
}

void Frontend::send_bye(Bye kind, std::string_view text) {
  std::string line = kind == Bye::Goodbye ? core::one_line(text) : std::string(text);
  if (kind == Bye::Goodbye) set_close_reason(line);
  output_ += "BYE ";
  append_quoted(output_, line);
  output_ += "\r\n";
}

}  // namespace portier::protocols::managesieve
