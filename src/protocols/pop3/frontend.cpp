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
#include "protocols/common/referral.hpp"

#include "core/base64.hpp"
#include "core/secure.hpp"
#include "core/strings.hpp"
#include "login/client_update.hpp"
#include "login/command_budget.hpp"
#include "protocols/pop3/backend_login.hpp"
#include "protocols/pop3/text.hpp"

namespace portier::protocols::pop3 {

namespace {

constexpr std::string_view kAuthFailed = "Authentication failed.";
constexpr std::string_view kTempFailed = "Temporary authentication failure.";
constexpr std::string_view kPlaintextDisabled =
    "Plaintext authentication disallowed on non-secure (SSL/TLS) connections.";
// Whole reply lines; [AUTH] as Dovecot's POP3_CMD_REPLY_AUTH_ERROR adds it.
constexpr common::SaslTexts kSaslTexts{
    .failed = "-ERR [AUTH] Authentication failed.",
    .unsupported = "-ERR [AUTH] Unsupported authentication mechanism.",
    .cleartext_denied =
        "-ERR [AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections.",
    .bad_initial_base64 = "-ERR [AUTH] Invalid base64 data in initial response",
    .bad_base64 = "-ERR [AUTH] Invalid base64 data in continued response",
    .aborted = "-ERR Authentication aborted by client.",
};
// kMaskedAuthFailedReply without its CRLF.
constexpr std::string_view kMasked =
    kMaskedAuthFailedReply.substr(0, kMaskedAuthFailedReply.size() - 2);
constexpr common::FailureTexts kFailureTexts{
    .unavailable = "-ERR [SYS/TEMP] Account is temporarily unavailable.",
    .auth_failed = kMasked,
    .config = "-ERR Account is temporarily unavailable.",
    .limit = kMasked,
    .sasl_timeout = "Disconnected for inactivity during authentication.",
};
}  // namespace

Frontend::Frontend(const login::FrontendSettings& settings, login::ClientInfo& client)
    : FrontendBase(settings, client, kSaslTexts, kFailureTexts) {}

Frontend::~Frontend() { forget_user(); }

void Frontend::forget_user() {
  if (last_user_) core::secure_zero(*last_user_);
  last_user_.reset();
}

std::unique_ptr<login::Frontend> make_frontend(const login::FrontendSettings& settings,
                                               login::ClientInfo& client) {
  return std::make_unique<Frontend>(settings, client);
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

void Frontend::greet() {
  std::string line = "+OK ";
  if (client_.trusted) line += "[XCLIENT] ";  // Dovecot: saves the upstream proxy a CAPA
  line += one_line(settings_.greeting);
  reply_line(line);
}

void Frontend::auth_error(std::string_view text) {
  // Dovecot's POP3_CMD_REPLY_AUTH_ERROR: the text's own code wins.
  if (!text.empty() && text.front() == '[') {
    reply_line("-ERR " + std::string(text));
  } else {
    reply_line("-ERR [AUTH] " + std::string(text));
  }
}

Frontend::Event Frontend::close_with(std::string_view lines) {
  return close_lines(lines, "-ERR ");
}

Frontend::Event Frontend::bad(std::string_view line) {
  reply_line(line);
  if (invalid_limit_reached()) return close_with("-ERR Too many invalid bad commands.\r\n");
  return std::nullopt;
}

Frontend::Event Frontend::line_too_long() {
  return close_with("-ERR Input buffer full, aborting\r\n");
}

Frontend::Event Frontend::command_line(std::string_view verb, std::string_view args) {
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
    reply_line("-ERR APOP not enabled.");
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
  valid_command();
  return ev;
}

Frontend::Event Frontend::cmd_user(std::string_view args) {
  if (!cleartext_allowed()) {
    auth_error(kPlaintextDisabled);
    return std::nullopt;
  }
  forget_user();
  last_user_.emplace(args);
  reply_line("+OK");
  return std::nullopt;
}

Frontend::Event Frontend::cmd_pass(std::string_view args) {
  if (!cleartext_allowed()) {
    // The client may show only the PASS reply: say why here too.
    auth_error(kPlaintextDisabled);
    return std::nullopt;
  }
  if (!last_user_) {
    reply_line("-ERR No username given.");
    return std::nullopt;
  }
  std::string user = std::move(*last_user_);
  last_user_.reset();
  return authenticate(std::move(user), args);
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
  std::optional<std::string_view> ir;  // RFC 5034: "=" is an empty initial response
  if (sp != std::string_view::npos) ir = args.substr(sp + 1);
  return sasl_begin(args.substr(0, sp), ir);
}

Frontend::Event Frontend::cmd_stls() {
  return start_tls([this](std::string_view line) { reply_line(line); },
                   "-ERR TLS is already active.", "-ERR TLS support isn't enabled.",
                   "+OK Begin TLS negotiation now.");
}

void Frontend::on_tls_started() {
  // A USER given in plaintext must not be completed by a PASS over TLS.
  forget_user();
}

Frontend::Event Frontend::cmd_xclient(std::string_view args) {
  if (!client_.trusted) {
    reply_line("+OK You are not from trusted IP - ignoring");
    return std::nullopt;
  }
  // Validate everything first: a bad attribute changes nothing (Dovecot
  // applies the good ones before the bad one; all-or-nothing is clearer).
  login::ClientUpdate update(client_);
  for (std::string_view p : core::split_ws(args)) {
    size_t eq = p.find('=');
    if (eq == std::string_view::npos) continue;  // Dovecot ignores what it does not know
    const std::string_view key = p.substr(0, eq), v = p.substr(eq + 1);
    if (auto field = login::ClientUpdate::xclient_field(key)) {
      // A session id that could not be forwarded on an XCLIENT line is ignored.
      if (*field == login::ClientField::SessionId && !xclient_value_ok(v)) continue;
      update.set(*field, v);
    } else if (core::iequals(key, "FORWARD") && !core::base64_decode(v)) {
      // Checked, not kept: ClientInfo has no place for forward fields yet.
      update.invalidate();
    }
  }
  if (!update.apply(client_)) {
    reply_line("-ERR Invalid parameters");
    return std::nullopt;
  }
  reply_line("+OK Updated");
  return std::nullopt;
}

void Frontend::refuse_login(AuthFailure kind, std::string_view reason) {
  switch (kind) {
    case AuthFailure::Failed:
    case AuthFailure::Disabled:
      auth_error(reason.empty() ? std::string(kAuthFailed) : one_line(reason));
      break;
    case AuthFailure::TempFail:
      reply_line("-ERR [SYS/TEMP] " +
                 (reason.empty() ? std::string(kTempFailed) : one_line(reason)));
      break;
    case AuthFailure::CleartextDenied:
      auth_error(kPlaintextDisabled);
      break;
    case AuthFailure::Limit:
      // Dovecot's LIMIT reply prefix.
      reply_line("-ERR [IN-USE] " +
                 (reason.empty() ? std::string("Too many connections for this user.")
                                 : one_line(reason)));
      break;
  }
}

bool Frontend::refer(const login::Referral& r) {
  // Dovecot's POP3 referral has no OK form: always a refusal.
  reply_line("-ERR [REFERRAL/" + common::referral_target(r, 110) + "] Referral");
  return false;
}

std::unique_ptr<login::BackendLogin> Frontend::make_backend_login(
    const login::BackendLoginParams& p) {
  return std::make_unique<BackendLogin>(p);
}

void Frontend::send_bye(Bye, std::string_view text) { reply_line("-ERR " + one_line(text)); }

}  // namespace portier::protocols::pop3
