// IMAP proxy → backend login (spec §3.1-§3.6, §7.1).
//
// Default (pipelined) dialogue, banner lists ID:
//   B: * OK [CAPABILITY IMAP4rev1 SASL-IR ID STARTTLS AUTH=PLAIN] Dovecot ready.
//   P: I ID ("x-session-id" "y7/P7lthiNF/AAAB" "x-originating-ip" "192.0.2.7" ...)
//   P: L LOGIN "alice" "secret"                              state id+login/banner
//   B: * ID ("name" "Dovecot")                               (swallowed)
//   B: I OK ID completed.                                    state login/id
//   B: L OK [CAPABILITY IMAP4rev1 ... ] Logged in            -> Success
//   client gets: <tag> OK [CAPABILITY IMAP4rev1 ...] Logged in
//
// With starttls: the first batch is [I ID +] S STARTTLS; after `S OK` the
// engine runs the TLS handshake and on_tls_ready() sends C CAPABILITY + L ...
// (what came before TLS is forgotten: capabilities are read again over TLS).
// With proxy_nopipelining every step waits for the previous tagged reply.
// With proxy_mech or a master user: L AUTHENTICATE <MECH> [<ir>|=], and
// continuations `+ <b64>` are answered with bare base64 lines. OAuth
// (proxy_mech=%{mechanism}): an initial response over 4 KiB of base64 goes
// after the empty `+ ` instead; a failure challenge `+ <b64 JSON>` is kept
// in failure().sasl_challenge and acknowledged (`AQ==` / empty line), then
// the tagged NO ends the login as usual.

#include "protocols/imap/backend_login.hpp"
#include "protocols/common/referral.hpp"

#include <string>

#include "core/base64.hpp"
#include "core/secure.hpp"
#include "core/strings.hpp"
#include "core/text.hpp"
#include "net/address.hpp"
#include "protocols/imap/quote.hpp"

namespace portier::protocols::imap {

using login::BackendEvent;
using login::FailureType;

namespace {

constexpr std::string_view kAuthFailedReply = "NO [AUTHENTICATIONFAILED] Authentication failed.";
// §13.10: a Dovecot backend rejects the whole ID when any key is longer.
constexpr size_t kMaxIdKeyLength = 30;
// The longest base64 initial response sent on the AUTHENTICATE line: the
// line stays well inside Dovecot's login line limit (8 KiB in 2.3/2.4).
constexpr size_t kMaxInitialResponse = 4096;

bool is_ok_reply(std::string_view rest) {
  return core::istarts_with(rest, "OK") && (rest.size() == 2 || rest[2] == ' ');
}

// "OK text" -> "text"; "OK" -> "".
std::string_view reply_text(std::string_view rest) {
  return rest.size() > 3 ? rest.substr(3) : std::string_view{};
}

// The first tag character of a tagged line "X ..." (case-insensitive, as
// in Dovecot 2.4), or 0 when the line is not of that shape.
char line_tag(std::string_view line) {
  if (line.size() < 2 || line[1] != ' ') return 0;
  char c = line[0];
  if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  return c;
}

// "[CODE rest] text" -> "CODE" (upper-case); empty if no resp-code.
std::string resp_code(std::string_view text) {
  if (text.empty() || text[0] != '[') return {};
  size_t end = text.find_first_of(" ]", 1);
  if (end == std::string_view::npos) return {};
  return core::to_upper(text.substr(1, end - 1));
}

// "[CAPABILITY a b c] text" -> "a b c" (text must start with the code).
std::string_view capability_code_value(std::string_view text) {
  std::string_view v = text.substr(12);
  size_t end = v.find(']');
  return end == std::string_view::npos ? v : v.substr(0, end);
}

}  // namespace

bool has_capability(std::string_view caps, std::string_view cap) {
  // A scan, not split_ws(): called several times per login, and a vector
  // per call showed in the instruction profile.
  auto ws = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f'; };
  size_t i = 0;
  while (i < caps.size()) {
    while (i < caps.size() && ws(caps[i])) ++i;
    size_t start = i;
    while (i < caps.size() && !ws(caps[i])) ++i;
    if (i > start && core::iequals(caps.substr(start, i - start), cap)) return true;
  }
  return false;
}

std::string sanitize_for_log(std::string_view s, size_t max) {
  return core::sanitize_for_log(s, max);
}

BackendLogin::BackendLogin(const login::BackendLoginParams& p, std::string client_tag,
                           bool client_sent_capability)
    : BackendBase(p),
      tls_(p.tls),
      nopipelining_(p.nopipelining),
      client_tag_(std::move(client_tag)),
      client_sent_capability_(client_sent_capability) {
  // §11.8: a master login always uses SASL; PLAIN unless proxy_mech says otherwise.
  if (mech_.empty() && !master_.empty()) mech_ = "PLAIN";
  mech_ = core::to_upper(mech_);
}

BackendLogin::~BackendLogin() = default;

std::string BackendLogin::build_id_command() const {
  const login::ClientInfo& c = *client_;
  std::string s = "I ID (\"x-session-id\" ";
  append_quoted(s, c.session_id);
  s += " \"x-originating-ip\" ";
  append_quoted(s, net::to_text(c.remote_ip));
  s += " \"x-originating-port\" \"" + std::to_string(c.remote_port) + '"';
  s += " \"x-connected-ip\" ";
  append_quoted(s, net::to_text(c.local_ip));
  s += " \"x-connected-port\" \"" + std::to_string(c.local_port) + '"';
  s += " \"x-proxy-ttl\" \"" + std::to_string(c.proxy_ttl > 0 ? c.proxy_ttl - 1 : 0) + '"';
  s += " \"x-client-transport\" ";
  s += c.end_client_tls ? "\"TLS\"" : "\"insecure\"";
  if (!c.local_name.empty()) {
    s += " \"x-connected-name\" ";
    append_quoted(s, c.local_name);
  }
  for (const auto& [k, v] : forward_) {
    // Dropped quietly rather than sent: one bad pair would make a Dovecot
    // backend refuse the whole ID and lose all client-IP forwarding (§13.10).
    std::string key = "x-forward-" + k;
    if (k.empty() || key.size() > kMaxIdKeyLength) continue;
    if (!core::no_control_chars(k) || !core::no_control_chars(v)) continue;
    s += ' ';
    append_quoted(s, key);
    s += ' ';
    append_quoted(s, v);  // never a literal: its "+" would confuse the SASL path
  }
  s += ")\r\n";
  return s;
}

BackendEvent BackendLogin::on_line(std::string_view line) {
  if (finished_) return BackendEvent::Failure;
  if (!seen_banner_) {
    seen_banner_ = true;
    state_.set_received(Received::Banner);
    return on_banner(line);
  }
  if (!line.empty() && line[0] == '+') return on_continuation(line);

  switch (line_tag(line)) {
    case 'S': {
      if (!starttls_sent_ || starttls_done_) break;  // not ours: unexpected tagged line
      starttls_done_ = true;
      state_.clear_sent(Sent::Starttls);
      state_.set_received(Received::Starttls);
      std::string_view rest = line.substr(2);
      if (!is_ok_reply(rest))
        return fail(FailureType::Remote, "STARTTLS failed: " + sanitize_for_log(rest));
      // Everything so far came over plaintext, where a man in the middle can
      // write: forget forwarded untagged lines (`* OK [ALERT] ...`) and the
      // capability list; write_login() asks again over TLS (`C CAPABILITY`).
      // Unlike Dovecot (§3.2), which keeps both (DIFFERENCES.md).
      untagged_.clear();
      backend_caps_.reset();
      return BackendEvent::StartTls;
    }
    case 'L':
      if (!login_sent_) break;
      state_.clear_sent(Sent::Login);
      state_.set_received(Received::Login);
      return on_login_reply(line.substr(2));
    case 'C': {
      if (!state_.is_sent(Sent::Capability)) break;  // not ours
      state_.clear_sent(Sent::Capability);
      state_.set_received(Received::Capability);
      // nopipelining: the login waits for this reply. Dovecot only continues
      // on `C OK` (and would hang until the timeout otherwise); the login
      // does not depend on the answer, so continue on any reply.
      if (!login_sent_ && write_login() < 0) return BackendEvent::Failure;
      return BackendEvent::Continue;
    }
    case 'I': {
      if (!state_.is_sent(Sent::Id)) break;  // not ours
      state_.clear_sent(Sent::Id);
      state_.set_received(Received::Id);
      std::string_view rest = line.substr(2);
      if (core::istarts_with(rest, "NO [SERVERBUG]"))
        return fail(FailureType::RemoteConfig,
                    "ID command failed: " + sanitize_for_log(rest.substr(3)));
      if (nopipelining_ && !starttls_sent_ && !login_sent_ && !capability_sent_) {
        int r = write_starttls();
        if (r < 0) return BackendEvent::Failure;
        if (r == 0 && write_login() < 0) return BackendEvent::Failure;
      }
      return BackendEvent::Continue;
    }
    default:
      break;
  }

  if (core::istarts_with(line, "* CAPABILITY") && (line.size() == 12 || line[12] == ' ')) {
    std::string_view caps = line.size() > 13 ? line.substr(13) : std::string_view{};
    if (!has_capability(caps, "IMAP4rev1"))
      return fail(FailureType::Protocol, "Remote server doesn't support IMAP4rev1");
    // Only the stored string changes: SASL-IR/LOGINDISABLED/ID come from the
    // banner alone (§13.6).
    backend_caps_ = std::string(caps);
    return BackendEvent::Continue;
  }
  if (core::istarts_with(line, "* ID ") || core::istarts_with(line, "* BYE ") ||
      core::iequals(line, "* BYE"))
    return BackendEvent::Continue;
  if (line.size() >= 2 && line[0] == '*' && line[1] == ' ') {
    // e.g. `* OK [ALERT] ...`: reaches the client ahead of the final reply.
    untagged_.append(line);
    untagged_.append("\r\n");
    return BackendEvent::Continue;
  }
  // Any other tagged line: not ours; Dovecot logs "Unexpected input, ignoring".
  return BackendEvent::Continue;
}

BackendEvent BackendLogin::on_banner(std::string_view line) {
  if (!core::istarts_with(line, "* OK "))
    return fail(FailureType::Protocol, "Invalid banner: " + sanitize_for_log(line));

  std::string_view text = line.substr(5);
  if (core::istarts_with(text, "[CAPABILITY ")) {
    std::string_view caps = capability_code_value(text);
    if (!has_capability(caps, "IMAP4rev1"))
      return fail(FailureType::Protocol, "Remote server doesn't support IMAP4rev1");
    sasl_ir_ = has_capability(caps, "SASL-IR");
    logindisabled_ = has_capability(caps, "LOGINDISABLED");
    backend_caps_ = std::string(caps);
    // No capability code in the banner = no ID at all (§13.5).
    if (has_capability(caps, "ID") && !not_trusted_ && client_ != nullptr) {
      output_ += build_id_command();
      state_.set_sent(Sent::Id);
      if (nopipelining_) return BackendEvent::Continue;  // the rest after `I ...`
    }
  }

  int r = write_starttls();
  if (r < 0) return BackendEvent::Failure;
  if (r == 0 && write_login() < 0) return BackendEvent::Failure;
  return BackendEvent::Continue;
}

int BackendLogin::write_starttls() {
  if (!starttls_) return 0;
  if (backend_caps_ && !has_capability(*backend_caps_, "STARTTLS")) {
    fail(FailureType::RemoteConfig, "STARTTLS not supported");
    return -1;
  }
  output_ += "S STARTTLS\r\n";
  state_.set_sent(Sent::Starttls);
  starttls_sent_ = true;
  return 1;
}

BackendEvent BackendLogin::on_tls_ready() {
  if (finished_) return BackendEvent::Failure;
  if (!starttls_done_ || login_sent_) return BackendEvent::Continue;
  if (write_login() < 0) return BackendEvent::Failure;
  return BackendEvent::Continue;
}

int BackendLogin::write_login() {
  // CAPABILITY if the caps are unknown, or (a Dovecot-backend workaround) if
  // the client asked for CAPABILITY itself: the backend then answers with an
  // untagged CAPABILITY instead of a resp-code, matching what the client gets.
  if (!capability_sent_ && (!backend_caps_ || client_sent_capability_)) {
    capability_sent_ = true;
    state_.set_sent(Sent::Capability);
    output_ += "C CAPABILITY\r\n";
    if (nopipelining_) return 0;  // login after the `C` reply
  }
  login_sent_ = true;

  if (mech_.empty()) {
    if (logindisabled_ && !tls_) {
      fail(FailureType::RemoteConfig, "LOGINDISABLED advertised, but SSL/TLS not enabled");
      return -1;
    }
    reserve_output(user_.size() + password_.size());
    output_ += "L LOGIN ";
    append_string(output_, user_);
    output_ += ' ';
    append_string(output_, password_.view());
    output_ += "\r\n";
    state_.set_sent(Sent::Login);
    password_.clear();
    return 0;
  }

  // authcid = master if set, else the user; authzid = the user for master
  // logins (`destuser\0master\0pass`), empty otherwise (RFC 4616: same identity).
  if (!start_sasl()) {
    fail(FailureType::InternalConfig, "Unsupported SASL mechanism " + mech_);
    return -1;
  }
  output_ += "L AUTHENTICATE ";
  output_ += mech_;
  // The initial response only if the *banner* listed SASL-IR (§13.6). LOGIN
  // has no meaningful initial response: send none rather than "=". One too
  // long for a backend command line (an OAuth token) answers the empty
  // continuation instead, which the mechanism does on its own.
  if (sasl_ir_ && mech_ != "LOGIN") {
    std::string ir = sasl_->initial_response();
    if (common::base64_size(ir.size()) <= kMaxInitialResponse) {
      output_ += ' ';
      if (ir.empty()) output_ += '=';
      append_base64(ir);
    }
    core::secure_zero(ir);
  }
  output_ += "\r\n";
  state_.set_sent(Sent::Authenticate);
  return 0;
}

BackendEvent BackendLogin::on_continuation(std::string_view line) {
  // Without a SASL client this is the "+" for a LOGIN literal: ignore it.
  if (!sasl_) return BackendEvent::Continue;
  state_.clear_sent(Sent::Authenticate);
  state_.set_received(Received::AuthContinue);

  // `+ <b64>`, `+<b64>` (Dovecot main) and a bare `+` are all accepted.
  std::string_view payload = line.substr(1);
  if (!payload.empty() && payload[0] == ' ') payload.remove_prefix(1);
  switch (answer_challenge(payload, "", "\r\n")) {
    case Answer::BadBase64:
      return fail(FailureType::Protocol, "Invalid base64 data in AUTHENTICATE response");
    case Answer::Unexpected:
      return fail(FailureType::Protocol,
                  "Invalid authentication data: unexpected challenge for " + mech_);
    case Answer::Sent:
      break;
  }
  state_.set_sent(Sent::AuthContinue);
  return BackendEvent::Continue;
}

BackendEvent BackendLogin::on_login_reply(std::string_view rest) {
  if (is_ok_reply(rest)) {
    finished_ = true;
    sasl_.reset();
    std::string_view text = reply_text(rest);
    std::optional<std::string_view> caps;
    if (backend_caps_) caps = *backend_caps_;
    const bool tagged_caps = core::istarts_with(text, "[CAPABILITY ");
    if (tagged_caps) caps = capability_code_value(text);

    std::string& out = client_reply_;
    out = untagged_;
    if (client_sent_capability_ && caps) {
      // The client did not read the banner's resp-code; it gets the backend's
      // list the same way it asked for ours.
      out += "* CAPABILITY ";
      out += *caps;
      out += "\r\n";
    }
    out += client_tag_;
    out += " OK";
    if (!client_sent_capability_ && !tagged_caps && caps) {
      out += " [CAPABILITY ";
      out += *caps;
      out += ']';
      if (!text.empty() && text[0] == '[') {
        // Only one resp-code fits: the backend's other code is dropped (§13.7).
        size_t end = text.find(']');
        text = end == std::string_view::npos ? std::string_view{} : text.substr(end + 1);
        if (!text.empty() && text[0] == ' ') text.remove_prefix(1);
      }
    }
    if (!text.empty()) {
      out += ' ';
      out += text;
    }
    out += "\r\n";
    return BackendEvent::Success;
  }

  // The reason goes into the log line as is: no backend control bytes in it.
  const std::string reason =
      sanitize_for_log(core::istarts_with(rest, "NO ") ? rest.substr(3) : rest, 1024);
  const std::string generic =
      untagged_ + client_tag_ + " " + std::string(kAuthFailedReply) + "\r\n";
  if (!core::istarts_with(rest, "NO [")) {
    // No resp-code (or BAD): hide the backend's wording, which could tell
    // which users exist.
    return fail(FailureType::AuthReplied, reason, generic);
  }
  const std::string code = resp_code(rest.substr(3));
  const std::string verbatim = untagged_ + client_tag_ + " " + std::string(rest) + "\r\n";
  if (code == "AUTHENTICATIONFAILED") return fail(FailureType::AuthReplied, reason, generic);
  if (code == "UNAVAILABLE") return fail(FailureType::AuthTempfail, reason, verbatim);
  if (code == "SERVERBUG") return fail(FailureType::RemoteConfig, reason);
  if (code == "LIMIT") return fail(FailureType::LimitReached, reason, verbatim);
  if (code == "REFERRAL")  // [REFERRAL imap://[user[;AUTH=m]@]host[:port]/] (RFC 2221)
    return redirected(reason, common::referral_target_in(rest, "://", "/] "));
  // Other RFC 5530 codes a Dovecot backend uses for a refused login carry
  // something the user must act on: forwarded as they are. Any other code
  // (unknown, or made up by a non-Dovecot backend) gets the generic reply,
  // like a NO without a code: its text could tell which users exist.
  if (code == "AUTHORIZATIONFAILED" || code == "EXPIRED" || code == "PRIVACYREQUIRED" ||
      code == "CONTACTADMIN" || code == "INUSE")
    return fail(FailureType::AuthReplied, reason, verbatim);
  return fail(FailureType::AuthReplied, reason, generic);
}

}  // namespace portier::protocols::imap
