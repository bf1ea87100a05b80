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
#include "protocols/common/referral.hpp"

#include "core/strings.hpp"
#include "core/text.hpp"
#include "login/client_update.hpp"
#include "login/command_budget.hpp"
#include "protocols/submission/smtp.hpp"

namespace portier::protocols::submission {

namespace {

constexpr std::string_view kAuthFailed = "535 5.7.8 Authentication failed.";
constexpr std::string_view kUnavailable = "454 4.7.0 Account is temporarily unavailable.";
constexpr std::string_view kAuthRequired = "530 5.7.0 Authentication required.";
constexpr std::string_view kCleartextDenied =
    "523 5.7.10 Plaintext authentication disallowed on non-secure (SSL/TLS) connections.";
constexpr common::SaslTexts kSaslTexts{
    .failed = kAuthFailed,
    .unsupported = "504 5.5.4 Unsupported authentication mechanism.",
    .cleartext_denied = kCleartextDenied,
    .bad_initial_base64 = "501 5.5.2 Invalid base64 data in initial response",
    .bad_base64 = "501 5.5.2 Invalid base64 data in continued response",
    .aborted = "501 5.5.2 Authentication aborted by client.",
};
constexpr common::FailureTexts kFailureTexts{kUnavailable, kAuthFailed};
// A passdb failure reason that carries its own SMTP failure code and enhanced
// status code ("451 4.3.0 text", auth_http's Auth-Error-Code): sent as is.
// Only 4xx/5xx: a reason can never read as a success.
bool has_failure_code(std::string_view r) {
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  if (r.size() < 10 || (r[0] != '4' && r[0] != '5') || !digit(r[1]) || !digit(r[2]) || r[3] != ' ' ||
      r[4] != r[0] || r[5] != '.')
    return false;
  size_t i = 6, dots = 0;
  while (i < r.size() && (digit(r[i]) || r[i] == '.')) dots += r[i++] == '.';
  return dots == 1 && i < r.size() && r[i] == ' ' && digit(r[i - 1]);
}

bool unavailable(std::string_view v) {
  return core::iequals(v, "[UNAVAILABLE]") || core::iequals(v, "[TEMPUNAVAIL]");
}

}  // namespace

Frontend::Frontend(const login::FrontendSettings& settings, login::ClientInfo& client)
    : FrontendBase(settings, client, kSaslTexts, kFailureTexts) {
  if (settings_.hostname.empty()) settings_.hostname = "localhost";
}

std::unique_ptr<login::Frontend> make_frontend(const login::FrontendSettings& settings,
                                               login::ClientInfo& client) {
  return std::make_unique<Frontend>(settings, client);
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
      if (!mech_advertised(m)) continue;
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

void Frontend::greet() {
  reply_line("220 " + settings_.hostname + " " + settings_.greeting);
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
  return closed();
}

Frontend::Event Frontend::invalid(std::string_view line) {
  reply_line(line);
  if (invalid_limit_reached()) return close_with("421 4.7.0 " + settings_.hostname + " Too many invalid commands.\r\n");
  return std::nullopt;
}

Frontend::Event Frontend::line_too_long() { return close_with("500 5.5.2 Line too long\r\n"); }

Frontend::Event Frontend::command_line(std::string_view verb, std::string_view args) {
  while (!args.empty() && args.front() == ' ') args.remove_prefix(1);
  while (!args.empty() && args.back() == ' ') args.remove_suffix(1);
  if (verb.empty()) return invalid("500 5.5.2 Invalid command syntax");
  if (core::iequals(verb, "EHLO")) return cmd_ehlo(args, true);
  if (core::iequals(verb, "HELO")) return cmd_ehlo(args, false);
  if (core::iequals(verb, "AUTH")) return cmd_auth(args);
  if (core::iequals(verb, "STARTTLS")) return cmd_starttls(args);
  if (core::iequals(verb, "NOOP")) {
    reply_line("250 2.0.0 OK");
    return std::nullopt;
  }
  if (core::iequals(verb, "RSET")) {
    if (!args.empty()) return invalid("501 5.5.4 Invalid parameters");
    reply_line("250 2.0.0 OK");
    return std::nullopt;
  }
  if (core::iequals(verb, "QUIT")) return close_with("221 2.0.0 Bye\r\n");
  if (core::iequals(verb, "XCLIENT")) return cmd_xclient(args);
  if (core::iequals(verb, "MAIL") || core::iequals(verb, "RCPT") || core::iequals(verb, "DATA") ||
      core::iequals(verb, "BDAT") || core::iequals(verb, "BURL") || core::iequals(verb, "VRFY")) {
    reply_line(kAuthRequired);
    return std::nullopt;
  }
  return invalid("500 5.5.1 Unknown command");
}

Frontend::Event Frontend::cmd_ehlo(std::string_view args, bool ehlo) {
  if (args.empty() || args.find(' ') != std::string_view::npos || !core::visible_ascii(args))
    return invalid("501 5.5.4 Invalid domain");
  helo_seen_ = true;
  client_helo_.assign(args);
  client_proto_ = ehlo ? "ESMTP" : "SMTP";
  if (ehlo) {
    output_ += ehlo_reply();
  } else {
    reply_line("250 " + settings_.hostname);
  }
  return std::nullopt;
}

Frontend::Event Frontend::cmd_starttls(std::string_view args) {
  if (!args.empty()) return invalid("501 5.5.4 Invalid parameters");
  return start_tls([this](std::string_view line) { reply_line(line); },
                   "503 5.5.1 TLS is already active.", "502 5.5.1 TLS support isn't enabled.",
                   "220 2.0.0 Begin TLS negotiation now.");
}

void Frontend::on_tls_started() {
  // RFC 3207 §4.2: forget everything learned before TLS; EHLO again.
  helo_seen_ = false;
  client_helo_.clear();
  client_proto_.clear();
}

Frontend::Event Frontend::cmd_auth(std::string_view args) {
  auto parts = core::split_ws(args);
  if (parts.empty() || parts.size() > 2) return invalid("501 5.5.4 Invalid parameters");
  if (!helo_seen_) {
    reply_line("503 5.5.1 Send EHLO first.");
    return std::nullopt;
  }
  std::optional<std::string_view> ir;  // RFC 4954: "=" is an empty initial response
  if (parts.size() == 2) ir = parts[1];
  return sasl_begin(parts[0], ir);
}

void Frontend::send_challenge(std::string_view b64) {
  output_ += "334 ";
  output_ += b64;
  output_ += "\r\n";
}

Frontend::Event Frontend::cmd_xclient(std::string_view args) {
  if (!client_.trusted) {
    reply_line("550 5.7.14 You are not from trusted IP");
    return std::nullopt;
  }
  // Validate everything first: a bad attribute changes nothing.
  login::ClientUpdate update(client_);
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
    if (auto field = login::ClientUpdate::xclient_field(key)) {
      if (unavailable(v) && *field != login::ClientField::Ttl &&
          *field != login::ClientField::Transport)
        continue;
      if (!update.set(*field, v)) return invalid(bad);
    } else if (key == "HELO") {
      if (unavailable(v)) continue;
      if (!core::visible_ascii(v)) return invalid(bad);
      up.helo = v;
    } else if (key == "PROTO") {
      if (unavailable(v)) continue;
      std::string proto = core::to_upper(v);
      if (proto != "SMTP" && proto != "ESMTP" && proto != "LMTP") return invalid(bad);
      up.proto = proto;
    } else if (key == "LOGIN") {
      if (unavailable(v)) continue;
      up.login = v;
    } else if (key == "TIMEOUT") {
      if (!core::parse_uint(v)) return invalid(bad);
    }
    // Anything else (NAME, DESTNAME, FORWARD...) is accepted and ignored.
  }
  update.apply(client_);
  upstream_ = std::move(up);
  // Like a new connection: a fresh greeting, and EHLO is needed again.
  helo_seen_ = false;
  reply_line("220 " + settings_.hostname + " " + settings_.greeting);
  return std::nullopt;
}

void Frontend::refuse_login(AuthFailure kind, std::string_view reason) {
  switch (kind) {
    case AuthFailure::Failed:
      if (has_failure_code(reason))
        reply_line(core::one_line(reason));
      else
        reply_line(reason.empty() ? std::string(kAuthFailed) : "535 5.7.8 " + core::one_line(reason));
      break;
    case AuthFailure::TempFail:
      reply_line("454 4.7.0 " + (reason.empty() ? std::string("Temporary authentication failure.")
                                           : core::one_line(reason)));
      break;
    case AuthFailure::Disabled:
      reply_line("525 5.7.13 " + (reason.empty() ? std::string("Login disabled for this user.")
                                            : core::one_line(reason)));
      break;
    case AuthFailure::CleartextDenied:
      reply_line(kCleartextDenied);
      break;
    case AuthFailure::Limit:
      reply_line("454 4.7.0 Too many sessions for this user.");
      break;
  }
}

bool Frontend::refer(const login::Referral& r) {
  // Dovecot 2.4's redirect reply (no OK form: always a refusal).
  reply_line("550 5.2.900 " + common::referral_target(r, 587) + " Referral");
  return false;
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

void Frontend::send_bye(Bye kind, std::string_view text) {
  output_ += kind == Bye::Timeout ? "421 4.4.2 " : "421 4.7.0 ";
  reply_line(settings_.hostname + " " + std::string(text));
}

}  // namespace portier::protocols::submission
