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
#include "protocols/common/referral.hpp"

#include "core/secure.hpp"
#include "core/strings.hpp"
#include "core/text.hpp"
#include "login/client_update.hpp"
#include "login/command_budget.hpp"
#include "protocols/imap/backend_login.hpp"

namespace portier::protocols::imap {

namespace {

/// Capabilities every pre-login banner starts with (Dovecot's default list).
constexpr std::string_view kBaseCapabilities =
    "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+";
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
constexpr common::SaslTexts kSaslTexts{
    .failed = kAuthFailed,
    .unsupported = "NO Unsupported authentication mechanism.",
    .cleartext_denied = kPrivacyRequired,
    .bad_initial_base64 = "BAD Invalid base64 data in initial response",
    .bad_base64 = "BAD Invalid base64 data in continued response",
    .aborted = "BAD Authentication aborted by client.",
};
constexpr common::FailureTexts kFailureTexts{kUnavailable, kAuthFailed, kServerBug};

// Dovecot's rule for a reason text: a leading resp-code is kept as given,
// otherwise the text is an [ALERT].
std::string reason_reply(std::string_view reason) {
  std::string r = core::one_line(reason);  // a passdb reason: one line
  return !r.empty() && r[0] == '[' ? "NO " + r : "NO [ALERT] " + r;
}

// The ID keys a trusted upstream may set (Dovecot's x-* keys).
std::optional<login::ClientField> id_field(std::string_view key) {
  using login::ClientField;
  if (core::iequals(key, "x-originating-ip")) return ClientField::RemoteIp;
  if (core::iequals(key, "x-originating-port")) return ClientField::RemotePort;
  if (core::iequals(key, "x-connected-ip")) return ClientField::LocalIp;
  if (core::iequals(key, "x-connected-port")) return ClientField::LocalPort;
  if (core::iequals(key, "x-session-id") || core::iequals(key, "x-session-ext-id"))
    return ClientField::SessionId;
  if (core::iequals(key, "x-proxy-ttl")) return ClientField::Ttl;
  if (core::iequals(key, "x-client-transport")) return ClientField::Transport;
  return std::nullopt;
}

}  // namespace

Frontend::Frontend(const login::FrontendSettings& settings, login::ClientInfo& client)
    : FrontendBase(settings, client, kSaslTexts, kFailureTexts),
      parser_(common::parser_limits<CommandParser::Limits>(settings)) {}

std::unique_ptr<login::Frontend> make_frontend(const login::FrontendSettings& settings,
                                               login::ClientInfo& client) {
  return std::make_unique<Frontend>(settings, client);
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
    if (!mech_advertised(m)) continue;
    caps_ += " AUTH=";
    caps_ += m;
  }
  return caps_;
}

void Frontend::greet() {
  output_ += "* OK [CAPABILITY ";
  output_ += capabilities();
  output_ += "] ";
  output_ += settings_.greeting;
  output_ += "\r\n";
}

void Frontend::reply(std::string_view tag, std::string_view text) {
  output_ += tag.empty() ? std::string_view("*") : tag;
  output_ += ' ';
  output_ += text;
  output_ += "\r\n";
}

Frontend::Event Frontend::parse() {
  if (mode_ == Mode::SaslResponse) return next_sasl_response();
  return next_command(
      parser_, [this](Command& cmd) { return dispatch(cmd); }, [this] { return on_parse_error(); });
}

Frontend::Event Frontend::close_with(std::string_view bye_line) {
  return close_lines(bye_line, "* BYE ");
}

Frontend::Event Frontend::bad_command(std::string_view tag) {
  if (invalid_limit_reached()) return close_with("* BYE Too many invalid IMAP commands.\r\n");
  reply(tag, kBadCommand);
  return std::nullopt;
}

Frontend::Event Frontend::privacy_required(std::string_view tag, bool password_sent) {
  if (password_sent) output_ += kPasswordExposedAlert;
  reply(tag, kPrivacyRequired);
  if (invalid_limit_reached()) return close_with("* BYE Too many invalid IMAP commands.\r\n");
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
      if (invalid_limit_reached()) return close_with("* BYE Too many invalid IMAP commands.\r\n");
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
  Event ev = start_tls([&](std::string_view text) { reply(cmd.tag, text); },
                       "BAD TLS is already active.", "BAD TLS support isn't enabled.",
                       "OK Begin TLS negotiation now.");
  if (ev) parser_.reset();
  return ev;
}

void Frontend::on_tls_started() {
  did_starttls_ = true;
  parser_.reset();
}

Frontend::Event Frontend::cmd_login(Command& cmd) {
  if (cmd.args.size() != 2 || !cmd.args[0].is_astring() || !cmd.args[1].is_astring())
    return bad_command(cmd.tag);
  if (!cleartext_allowed()) return privacy_required(cmd.tag, true);
  tag_ = cmd.tag;
  return authenticate(cmd.args[0].value, cmd.args[1].value);
}

Frontend::Event Frontend::cmd_authenticate(Command& cmd) {
  if (cmd.args.empty() || cmd.args.size() > 2 || cmd.args[0].type != Arg::Type::Atom ||
      (cmd.args.size() == 2 && cmd.args[1].type != Arg::Type::Atom))
    return bad_command(cmd.tag);
  tag_ = cmd.tag;
  std::optional<std::string_view> ir;
  if (cmd.args.size() == 2) ir = cmd.args[1].value;
  // SASL-IR (RFC 4959): "=" is an empty initial response, not a password.
  ir_exposed_ = ir && *ir != "=";
  return sasl_begin(cmd.args[0].value, ir);
}

Frontend::Event Frontend::sasl_refused(sasl::Outcome outcome, std::string_view text) {
  if (outcome == sasl::Outcome::CleartextDenied) return privacy_required(tag_, ir_exposed_);
  reply(tag_, text);
  return std::nullopt;
}

Frontend::Event Frontend::next_sasl_response() {
  switch (in_.take_line(sasl_response_limit(), /*lf_counts=*/true)) {
    case login::PreloginInput::Line::NeedMore:
      return FrontendEvent::NeedInput;
    case login::PreloginInput::Line::TooLong:
      return close_with("* BYE Too long command line.\r\n");
    case login::PreloginInput::Line::Ready:
      break;
  }
  return sasl_respond(in_.line());
}

Frontend::Event Frontend::cmd_id(const Command& cmd) {
  // The parser streams ID (Dovecot's list -> key -> value): cmd.id holds the
  // verdict and the first few x-* pairs, never the whole command.
  if (!cmd.id) return bad_command(cmd.tag);  // `ID` without arguments
  const IdParams& id = *cmd.id;
  if (!id.valid) {
    reply(cmd.tag, "BAD Invalid ID parameters");
    if (invalid_limit_reached()) return close_with("* BYE Too many invalid IMAP commands.\r\n");
    return std::nullopt;
  }
  // Only a trusted hop may set these, and only with its first ID; one bad
  // value and none is taken (login::ClientUpdate).
  if (client_.trusted && !id_seen_) {
    login::ClientUpdate update(client_);
    for (const IdPair& p : id.pairs)
      if (auto field = id_field(p.key); field && !p.nil && !p.truncated)
        update.set(*field, p.value);
    update.apply(client_);
  }
  id_seen_ = true;
  output_ += "* ID NIL\r\n";
  reply(cmd.tag, client_.trusted ? "OK Trusted ID completed." : "OK ID completed.");
  return std::nullopt;
}

void Frontend::refuse_login(AuthFailure kind, std::string_view reason) {
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

bool Frontend::refer(const login::Referral& r) {
  // RFC 2221: NO (nologin) or OK (logged in, but use that server; Dovecot
  // then ends the session) with an IMAP URL (RFC 5092) naming the mechanism.
  reply(tag_, std::string(r.nologin ? "NO" : "OK") + " [REFERRAL imap://" +
                  common::referral_target(r, 143, true) + "/] " + core::one_line(r.reason));
  return !r.nologin;
}

std::unique_ptr<login::BackendLogin> Frontend::make_backend_login(
    const login::BackendLoginParams& p) {
  return std::make_unique<BackendLogin>(p, tag_, client_sent_capability_);
}

void Frontend::failure_reply(std::string_view text) { reply(tag_, text); }

void Frontend::send_bye(Bye, std::string_view text) {
  output_ += "* BYE ";
  output_ += text;
  output_ += "\r\n";
}

}  // namespace portier::protocols::imap
