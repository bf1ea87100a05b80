// ManageSieve proxy → backend login (spec §6.1, §7.3).
//
//   B: "IMPLEMENTATION" "Dovecot (Debian) Pigeonhole"            state none
//   B: "SASL" "PLAIN LOGIN"
//   B: "STARTTLS"
//   B: "XCLIENT"
//   B: OK "Dovecot (Debian) ready."
//   P: XCLIENT ADDR=192.0.2.7 PORT=52060 DESTADDR=192.0.2.1 DESTPORT=4190
//        SESSION=tvAc71thXMt/AAAB TTL=6 CLIENT-TRANSPORT=insecure  state xclient
//   B: OK "Updated"
//   P: AUTHENTICATE "PLAIN" "AHVzZXIzAHBhc3M="                     state auth
//   B: OK "Logged in."                                             -> Success
//   client gets: OK "Logged in."
//
// With starttls: after the greeting's OK, `STARTTLS` (state tls-start);
// `OK` -> TLS handshake; the backend resends its capabilities, read up to
// `OK` (state tls-ready); then XCLIENT / AUTHENTICATE as above. Challenges
// are strings (`"<b64>"`), answered with quoted base64 lines. A response
// may carry literals (`{n}` CRLF data): lines are joined until complete.
// OAuth (proxy_mech=%{mechanism}): an initial response over 1 KiB of base64
// goes as a literal `{n+}`; no host/port pairs in OAUTHBEARER (as Dovecot
// 2.4); a failure challenge `"<b64 JSON>"` is kept in
// failure().sasl_challenge and acknowledged (`"AQ=="` / `""`) before the NO.

#include "protocols/managesieve/backend_login.hpp"
#include "protocols/common/referral.hpp"

#include "core/base64.hpp"
#include "core/secure.hpp"
#include "core/strings.hpp"
#include "core/text.hpp"

namespace portier::protocols::managesieve {

using login::BackendEvent;
using login::FailureType;

namespace {

constexpr std::string_view kAuthFailedReply = "NO \"Authentication failed.\"\r\n";
// One backend response with its literals; far more than any greeting or reply.
constexpr size_t kMaxResponseSize = 65536;
// The longest initial response sent as a quoted string; longer ones go as a
// literal (Dovecot parses quoted strings only up to its line length).
constexpr size_t kMaxQuotedResponse = 1024;

bool all_atom_chars(std::string_view s) {
  for (char c : s)
    if (!is_atom_char(c)) return false;
  return !s.empty();
}

}  // namespace

std::string sanitize_for_log(std::string_view s, size_t max) {
  return core::sanitize_for_log(s, max);
}

BackendLogin::BackendLogin(const login::BackendLoginParams& p)
    : BackendBase(p) {
  mech_ = core::to_upper(mech_);
  // §6.1: proxy_mech or PLAIN (a master login is always PLAIN unless told otherwise).
  if (mech_.empty()) mech_ = "PLAIN";
}

BackendLogin::~BackendLogin() { core::secure_zero(pending_); }

std::string BackendLogin::build_xclient_command() const {
  const login::ClientInfo& c = *client_;
  std::string s = "XCLIENT ADDR=" + common::plain_ip(c.remote_ip);
  s += " PORT=" + std::to_string(c.remote_port);
  s += " DESTADDR=" + common::plain_ip(c.local_ip);
  s += " DESTPORT=" + std::to_string(c.local_port);
  if (all_atom_chars(c.session_id)) s += " SESSION=" + c.session_id;
  s += " TTL=" + std::to_string(common::next_ttl(c));
  s += c.end_client_tls ? " CLIENT-TRANSPORT=TLS" : " CLIENT-TRANSPORT=insecure";
  if (!forward_.empty()) s += " FORWARD=" + common::forward_base64(forward_);
  s += "\r\n";
  return s;
}

BackendEvent BackendLogin::on_line(std::string_view line) {
  if (finished_) return BackendEvent::Failure;
  std::string_view tail;
  if (!pending_active_) {
    core::secure_zero(pending_);
    pending_.assign(line);
    tail = line;
  } else if (literal_left_ >= line.size() + 2) {
    // The whole line (and its CRLF) is literal data.
    pending_.append(line);
    pending_.append("\r\n");
    literal_left_ -= line.size() + 2;
    return BackendEvent::Continue;
  } else if (literal_left_ == line.size() + 1) {
    return fail(FailureType::Protocol, "Remote sent invalid response: literal ends inside CRLF");
  } else {
    pending_.append(line);
    tail = line.substr(literal_left_);
    literal_left_ = 0;
  }
  size_t n = 0;
  if (ends_with_literal(tail, n)) {
    if (n > kMaxResponseSize || pending_.size() + n > kMaxResponseSize)
      return fail(FailureType::Protocol, "Remote sent invalid response: literal too large");
    pending_.append("\r\n");
    literal_left_ = n;
    pending_active_ = true;
    return BackendEvent::Continue;
  }
  pending_active_ = false;
  return on_response(pending_);
}

BackendEvent BackendLogin::on_response(std::string_view raw) {
  const Response r = parse_response(raw);
  switch (state_.get()) {
    case State::None:
    case State::TlsReady:
      if (r.kind == Response::Kind::Strings) return on_capability_line(raw, r);
      if (r.kind == Response::Kind::Ok) {
        if (state_.get() == State::TlsReady) return after_capabilities();
        if (starttls_) {
          if (!cap_starttls_)
            return fail(FailureType::RemoteConfig, "Remote doesn't support STARTTLS");
          output_ += "STARTTLS\r\n";
          state_.set(State::TlsStart);
          return BackendEvent::Continue;
        }
        return after_capabilities();
      }
      if (r.kind == Response::Kind::No || r.kind == Response::Kind::Bye) {
        if (state_.get() == State::TlsReady)
          return fail(FailureType::Remote, "Remote STARTTLS failed: " + sanitize_for_log(raw));
        return fail(FailureType::Protocol,
                    "Remote sent unexpected NO/BYE instead of capability response: " +
                        sanitize_for_log(raw));
      }
      return fail(FailureType::Protocol,
                  "Remote returned with invalid capability/greeting line: " +
                      sanitize_for_log(raw));

    case State::TlsStart:
      // `OK` followed by a space or the end of the line (§6.1 step 3).
      if (core::istarts_with(raw, "OK") && (raw.size() == 2 || raw[2] == ' ')) {
        // Capabilities learned before TLS are not trusted after it.
        cap_sasl_ = cap_starttls_ = cap_xclient_ = false;
        state_.set(State::TlsReady);
        return BackendEvent::StartTls;
      }
      return fail(FailureType::Remote,
                  "Remote refused STARTTLS command: " + sanitize_for_log(raw));

    case State::Xclient:
      if (r.kind == Response::Kind::Ok) return send_authenticate();
      return fail(FailureType::RemoteConfig, "Remote XCLIENT failed: " + sanitize_for_log(raw));

    case State::Auth:
      return on_auth_reply(raw, r);

    case State::kCount:
      break;
  }
  return fail(FailureType::Internal, "invalid proxy state");
}

BackendEvent BackendLogin::on_capability_line(std::string_view raw, const Response& r) {
  const std::string name = core::to_upper(r.strings[0]);
  if (name == "SASL") {
    if (r.strings.size() < 2)
      return fail(FailureType::Protocol,
                  "Server returned erroneous SASL capability: " + sanitize_for_log(raw));
    cap_sasl_ = !core::trim(r.strings[1]).empty();
  } else if (name == "STARTTLS") {
    cap_starttls_ = true;
  } else if (name == "XCLIENT") {
    cap_xclient_ = true;
  }
  return BackendEvent::Continue;
}

BackendEvent BackendLogin::after_capabilities() {
  // Unlike Dovecot (§13.3), proxy_not_trusted suppresses XCLIENT here too.
  if (cap_xclient_ && !not_trusted_ && client_ != nullptr) {
    output_ += build_xclient_command();
    state_.set(State::Xclient);
    return BackendEvent::Continue;
  }
  return send_authenticate();
}

BackendEvent BackendLogin::send_authenticate() {
  if (!cap_sasl_)
    return fail(FailureType::RemoteConfig, "Server has disabled authentication (TLS required?)");
  // authcid = master if set, else the user; authzid = the user for master
  // logins (`destuser\0master\0pass`), empty otherwise.
  if (!start_sasl(/*authzid_always=*/false, /*host_port=*/false))
    return fail(FailureType::InternalConfig, "Unsupported SASL mechanism " + mech_);
  output_ += "AUTHENTICATE ";
  append_quoted(output_, mech_);
  std::string ir = sasl_->initial_response();
  if (!ir.empty()) {
    // An empty initial response is left out entirely (§6.1 step 6). A long
    // one (an OAuth token) goes as a non-synchronizing literal (RFC 5804
    // §1.2), which needs no wait for a continuation.
    const size_t n = common::base64_size(ir.size());
    if (n <= kMaxQuotedResponse) {
      output_ += " \"";
      append_base64(ir);
      output_ += '"';
    } else {
      output_ += " {" + std::to_string(n) + "+}\r\n";
      append_base64(ir);
    }
    core::secure_zero(ir);
  }
  output_ += "\r\n";
  state_.set(State::Auth);
  return BackendEvent::Continue;
}

BackendEvent BackendLogin::on_auth_reply(std::string_view raw, const Response& r) {
  switch (r.kind) {
    case Response::Kind::Strings: {
      if (r.strings.size() != 1)
        return fail(FailureType::Protocol,
                    "Server sent invalid SASL challenge line: " + sanitize_for_log(raw));
      switch (answer_challenge(r.strings[0], "\"", "\"\r\n")) {
        case Answer::BadBase64:
          return fail(FailureType::Protocol,
                      "Server sent invalid base64 data in AUTHENTICATE response");
        case Answer::Unexpected:
          return fail(FailureType::Protocol,
                      "Server sent invalid SASL challenge line: unexpected challenge for " +
                          mech_);
        case Answer::Sent:
          break;
      }
      return BackendEvent::Continue;
    }
    case Response::Kind::Ok:
      finished_ = true;
      sasl_.reset();
      client_reply_.assign(raw);
      client_reply_ += "\r\n";
      return BackendEvent::Success;
    case Response::Kind::No: {
      const std::string code = core::to_upper(code_name(r.code));
      const std::string reason = sanitize_for_log(r.has_text ? r.text : std::string(raw), 200);
      const std::string verbatim = std::string(raw) + "\r\n";
      if (code == "TRYLATER") return fail(FailureType::AuthTempfail, reason, verbatim);
      // NORETRY: the backend asks not to retry; RemoteConfig is the
      // not-retried type whose reply keeps that code (DIFFERENCES.md).
      if (code == "TRYLATER/NORETRY") return fail(FailureType::RemoteConfig,
                                                       "Remote refused authentication (TRYLATER/NORETRY): " + reason);
      // Dovecot forgets to reply here (§13.4); the client gets the backend's NO.
      if (code.starts_with("LIMIT")) return fail(FailureType::LimitReached, reason, verbatim);
      if (code == "REFERRAL")  // NO (REFERRAL sieve://[user@]host[:port]) "..."
        return redirected(reason, common::referral_target_in(r.code, "://", "/) "));
      // Anything else: hide the backend's wording (it could tell which users exist).
      return fail(FailureType::AuthReplied, reason, std::string(kAuthFailedReply));
    }
    case Response::Kind::Bye:
    case Response::Kind::Invalid:
      break;
  }
  return fail(FailureType::Protocol, "Remote sent invalid response: " + sanitize_for_log(raw));
}

BackendEvent BackendLogin::on_tls_ready() {
  if (finished_) return BackendEvent::Failure;
  // The backend resends its capability list after TLS (RFC 5804 §2.2).
  return BackendEvent::Continue;
}

}  // namespace portier::protocols::managesieve
