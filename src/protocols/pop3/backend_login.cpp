// POP3 proxy → backend login (spec §4.1, §4.2, §7.3).
//
// Default dialogue with a Dovecot backend that trusts us (state after each write):
//   B: +OK [XCLIENT] Dovecot (Debian) ready.                      banner
//   P: XCLIENT ADDR=127.0.0.2 PORT=48878 DESTADDR=127.0.0.1 DESTPORT=110
//        SESSION=AUDo7lth7r5/AAAB TTL=4 CLIENT-TRANSPORT=insecure  (one line)
//   P: USER user1                                  (same write)   xclient
//   B: +OK Updated                                                login1
//   B: +OK
//   P: PASS pass                                                  login2
//   B: +OK Logged in.                              -> Success, the client gets it verbatim
//
// Banner without ` [XCLIENT]` (or proxy_not_trusted): no XCLIENT, `USER` (login1).
// With starttls: `STLS` (starttls), `+OK`, TLS handshake, then the batch above
// at once: POP3 has no banner after STLS.
// With proxy_mech or master: `AUTH <MECH> <base64 IR | =>` instead of USER
// (login2, or xclient while the XCLIENT reply is outstanding), `+ <b64>`
// challenges answered on their own lines; an AUTH line over 255 octets goes
// without its initial response, which then answers the empty `+ `. OAuth: a
// failure challenge `+ <b64 JSON>` is kept in failure().sasl_challenge and
// acknowledged (`AQ==` / empty line) before the backend's -ERR.
// A user name or password that cannot travel on a USER/PASS line (CR, LF,
// NUL) goes with AUTH PLAIN instead.

#include "protocols/pop3/backend_login.hpp"
#include "protocols/common/referral.hpp"

#include "core/base64.hpp"
#include "core/secure.hpp"
#include "core/strings.hpp"
#include "protocols/pop3/text.hpp"

namespace portier::protocols::pop3 {

using login::BackendEvent;
using login::FailureType;

namespace {

// RFC 5034 §4: an AUTH command with its initial response fits in 255 octets.
constexpr size_t kMaxAuthLine = 255;

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

bool line_safe(std::string_view s) {
  return s.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos;
}

}  // namespace

BackendLogin::BackendLogin(const login::BackendLoginParams& p)
    : BackendBase(p) {
  mech_ = core::to_upper(mech_);
  // §11.8: a master login always goes through SASL, PLAIN unless proxy_mech says otherwise.
  if (mech_.empty() && !master_.empty()) mech_ = "PLAIN";
  // USER/PASS are raw lines: anything that would end or split the line goes
  // through SASL PLAIN instead (base64 carries every byte but NUL).
  if (mech_.empty() && (!line_safe(user_) || !line_safe(password_.view()))) mech_ = "PLAIN";
}

BackendLogin::~BackendLogin() = default;

BackendEvent BackendLogin::on_line(std::string_view line) {
  if (finished_) return BackendEvent::Failure;
  switch (state_.get()) {
    case State::Banner:
      if (!starts_with(line, "+OK"))
        return fail(FailureType::Protocol, "Invalid banner: " + one_line(line));
      xclient_usable_ = starts_with(line.substr(3), " [XCLIENT]");
      if (starttls_) {
        // Like Dovecot: no CAPA first; a backend without STLS answers -ERR.
        output_ += "STLS\r\n";
        state_.set(State::Starttls);
        return BackendEvent::Continue;
      }
      return send_login();

    case State::Starttls:
      if (!starts_with(line, "+OK"))
        return fail(FailureType::Remote, "STLS failed: " + one_line(line));
      return BackendEvent::StartTls;

    case State::Xclient:
      if (!starts_with(line, "+OK"))
        return fail(FailureType::RemoteConfig, "XCLIENT failed: " + one_line(line));
      state_.set(sasl_ ? State::Login2 : State::Login1);
      return BackendEvent::Continue;

    case State::Login1:
      if (!starts_with(line, "+OK")) return login_failed(line);
      // USER and PASS are never pipelined (§4.1 step 5).
      reserve_output(password_.size());
      output_ += "PASS ";
      output_ += password_.view();
      output_ += "\r\n";
      password_.clear();
      state_.set(State::Login2);
      return BackendEvent::Continue;

    case State::Login2:
      if (starts_with(line, "+OK")) {
        finished_ = true;
        sasl_.reset();
        client_reply_.assign(line);
        client_reply_ += "\r\n";
        return BackendEvent::Success;
      }
      if (sasl_ && starts_with(line, "+")) return sasl_continue(line.substr(1));
      return login_failed(line);

    case State::kCount:
      break;
  }
  return fail(FailureType::Internal, "invalid proxy state");
}

BackendEvent BackendLogin::on_tls_ready() {
  if (finished_) return BackendEvent::Failure;
  return send_login();
}

std::string BackendLogin::build_xclient() const {
  const login::ClientInfo& c = *client_;
  std::string out = "XCLIENT";
  auto add = [&](std::string_view name, const std::string& value) {
    if (!xclient_value_ok(value)) return;  // never let a value split or end the line
    out += ' ';
    out += name;
    out += '=';
    out += value;
  };
  add("ADDR", common::plain_ip(c.remote_ip));
  add("PORT", std::to_string(c.remote_port));
  add("DESTADDR", common::plain_ip(c.local_ip));
  add("DESTPORT", std::to_string(c.local_port));
  add("SESSION", c.session_id);
  add("TTL", std::to_string(common::next_ttl(c)));
  add("CLIENT-TRANSPORT", (c.end_client_tls || c.tls) ? "TLS" : "insecure");
  // DESTNAME: portier does not track the client's SNI name yet.
  if (!forward_.empty()) add("FORWARD", common::forward_base64(forward_));
  out += "\r\n";
  return out;
}

BackendEvent BackendLogin::send_login() {
  if (xclient_usable_ && !not_trusted_ && client_ != nullptr) {
    output_ += build_xclient();
    state_.set(State::Xclient);
  } else {
    state_.set(State::Login1);
  }

  if (mech_.empty()) {
    // USER now, PASS after its +OK.
    output_ += "USER ";
    output_ += user_;
    output_ += "\r\n";
    return BackendEvent::Continue;
  }

  // Dovecot: authid = master or user; authzid = user only for master logins.
  if (password_.view().find('\0') != std::string_view::npos)
    return fail(FailureType::AuthNotReplied, "Password contains NUL: cannot be sent to the backend");
  if (!start_sasl()) return fail(FailureType::InternalConfig, "Unsupported SASL mechanism " + mech_);
  std::string ir_raw = sasl_->initial_response();
  // The initial response goes on the AUTH line (`=` for an empty one) unless
  // the line would pass RFC 5034's 255 octets (an OAuth token): then it
  // answers the backend's empty `+ `, which the mechanism does on its own.
  const std::string cmd = "AUTH " + mech_;
  output_ += cmd;
  if (cmd.size() + 1 + common::base64_size(ir_raw.size()) + 2 <= kMaxAuthLine) {
    output_ += ' ';
    if (ir_raw.empty()) output_ += '=';
    append_base64(ir_raw);
  }
  output_ += "\r\n";
  core::secure_zero(ir_raw);
  if (state_.get() != State::Xclient) state_.set(State::Login2);
  return BackendEvent::Continue;
}

BackendEvent BackendLogin::sasl_continue(std::string_view payload) {
  if (!payload.empty() && payload.front() == ' ') payload.remove_prefix(1);
  switch (answer_challenge(core::trim(payload), "", "\r\n")) {
    case Answer::BadBase64:
      return fail(FailureType::Protocol, "Invalid base64 data in AUTH response");
    case Answer::Unexpected:
      return fail(FailureType::Protocol, "Authentication failed: unexpected SASL challenge");
    case Answer::Sent:
      break;
  }
  return BackendEvent::Continue;
}

BackendEvent BackendLogin::login_failed(std::string_view line) {
  if (!starts_with(line, "-ERR "))
    return fail(FailureType::AuthReplied, one_line(line), std::string(kBackendAuthFailedReply));
  const std::string text = one_line(line.substr(5));
  const std::string verbatim = "-ERR " + text + "\r\n";
  if (starts_with(text, "[SYS/TEMP]"))
    return fail(FailureType::AuthTempfail, text, verbatim);
  if (starts_with(text, "[IN-USE]")) return fail(FailureType::LimitReached, text, verbatim);
  if (starts_with(text, "[REFERRAL/"))  // [2.4] -ERR [REFERRAL/[user@]host[:port]] ...
    return redirected(text, common::referral_target_in(text, "[REFERRAL/", "] "));
  // Codes about the mailbox or server state, not about the credentials.
  if (starts_with(text, "[SYS/PERM]") || starts_with(text, "[LOGIN-DELAY]"))
    return fail(FailureType::AuthReplied, text, verbatim);
  // Anything else ([AUTH] or no code) may say whether the user exists (§13.8):
  // the client gets the uniform text, the log keeps the backend's.
  return fail(FailureType::AuthReplied, text, std::string(kMaskedAuthFailedReply));
}

}  // namespace portier::protocols::pop3
