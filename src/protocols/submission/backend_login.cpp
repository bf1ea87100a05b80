// Submission proxy → backend login (spec §5.1-§5.4, §7.3).
//
// Default dialogue with a backend that trusts us (state after each write):
//   B: 220 backend.lab Dovecot ready.                        banner
//   P: EHLO proxy.lab                                        ehlo
//   B: 250-backend.lab ... 250-AUTH PLAIN LOGIN ... 250 XCLIENT ADDR PORT PROTO HELO LOGIN SESSION TTL TIMEOUT FORWARD
//   P: XCLIENT HELO=client.lab PROTO=ESMTP TTL=4 PORT=60318 ADDR=127.0.0.2 SESSION=UK0E71thnut/AAAB
//   P: EHLO proxy.lab                          (same write)  xclient
//   B: 220 backend.lab Dovecot ready.                        xclient-ehlo
//   B: 250-backend.lab ... 250 XCLIENT ...
//   P: AUTH PLAIN dXNlcjEAdXNlcjEAcGFzcw==                   authenticate
//   B: 235 2.7.0 Logged in.                                  -> Success, client gets it verbatim
//
// With starttls: after the first EHLO reply `STARTTLS` (starttls), `220`,
// TLS handshake, `EHLO` again (tls-ehlo), then XCLIENT/AUTH as above.
// With proxy_noauth: XCLIENT carries LOGIN=<user> (the user portier
// authenticated, never an upstream's XCLIENT LOGIN), no AUTH is sent, and the
// client gets `235 2.7.0 Logged in.` after the second EHLO reply.
// An AUTH line over 512 bytes goes out as `AUTH <MECH>`; the initial
// response follows the backend's empty `334 `.
// OAuth (proxy_mech=%{mechanism}): no host/port pairs in OAUTHBEARER (as
// Dovecot 2.4); a failure challenge `334 <b64 JSON>` is kept in
// failure().sasl_challenge and acknowledged (`AQ==` / empty line) before 535.

#include "protocols/submission/backend_login.hpp"
#include "protocols/common/referral.hpp"

#include "core/base64.hpp"
#include "core/secure.hpp"
#include "core/strings.hpp"
#include "protocols/submission/smtp.hpp"

namespace portier::protocols::submission {

using login::BackendEvent;
using login::FailureType;

namespace {

constexpr std::string_view kNoauthReply = "235 2.7.0 Logged in.\r\n";
constexpr std::string_view kUnavailable = "[UNAVAILABLE]";

// XCLIENT ADDR/DESTADDR value: Dovecot 2.4 marks IPv6 with an `IPV6:` prefix
// (§13.12); 2.3 receivers accept it too, IPv4 looks the same in both.
std::string xclient_addr(const asio::ip::address& a) {
  std::string s = common::plain_ip(a);
  if (s.find(':') != std::string::npos) return "IPV6:" + s;
  return s;
}

}  // namespace

BackendLogin::BackendLogin(const login::BackendLoginParams& p, ClientSmtpInfo smtp)
    : BackendBase(p), hostname_(p.hostname), noauth_(p.noauth), smtp_(std::move(smtp)) {
  mech_ = core::to_upper(mech_);
  // §11.8: a master login always uses SASL PLAIN unless proxy_mech says otherwise;
  // the protocol default is PLAIN anyway.
  if (mech_.empty()) mech_ = "PLAIN";
  if (hostname_.empty()) hostname_ = "localhost";
}

BackendLogin::~BackendLogin() { wipe_secrets(); }

void BackendLogin::wipe_secrets() {
  password_.clear();
  pending_ir_.clear();
}

void BackendLogin::send_ehlo() {
  output_ += "EHLO ";
  output_ += hostname_;
  output_ += "\r\n";
}

void BackendLogin::forget_capabilities() {
  cap_xclient_ = cap_starttls_ = cap_auth_ = cap_enhanced_ = false;
  xclient_attrs_.clear();
}

bool BackendLogin::advertised(std::string_view attr) const {
  for (const auto& a : xclient_attrs_)
    if (core::iequals(a, attr)) return true;
  return false;
}

BackendEvent BackendLogin::on_line(std::string_view line) {
  if (finished_) return BackendEvent::Failure;
  auto r = parse_reply_line(line);
  // Every line of one multi-line reply must carry the same status.
  if (reply_status_ != 0 && (!r || r->status != reply_status_))
    return fail(FailureType::Protocol, "Inconsistent SMTP reply: " + sanitize_for_log(line) +
                                           " (status != " + std::to_string(reply_status_) + ")");
  if (r) reply_status_ = r->last ? 0 : r->status;

  switch (state_.get()) {
    case State::Banner:
      if (!r || r->status != 220)
        return fail(FailureType::Protocol, "Invalid banner: " + sanitize_for_log(line));
      if (!r->last) return BackendEvent::Continue;
      send_ehlo();
      state_.set(State::Ehlo);
      return BackendEvent::Continue;

    case State::Ehlo:
    case State::TlsEhlo:
    case State::XclientEhlo: {
      if (!r || r->status / 100 != 2)
        return fail(FailureType::Protocol, "Invalid EHLO line: " + sanitize_for_log(line));
      std::string_view text = r->text;
      if (core::istarts_with(text, "XCLIENT ")) {
        cap_xclient_ = true;
        xclient_attrs_.clear();
        for (auto a : core::split_ws(text.substr(8))) xclient_attrs_.emplace_back(a);
      } else if (core::iequals(text, "STARTTLS")) {
        cap_starttls_ = true;
      } else if (core::istarts_with(text, "AUTH ") && !core::trim(text.substr(5)).empty()) {
        cap_auth_ = true;
      } else if (core::iequals(text, "ENHANCEDSTATUSCODES")) {
        cap_enhanced_ = true;
      }
      if (!r->last) return BackendEvent::Continue;
      return on_ehlo_done();
    }

    case State::Starttls:
      if (!r || r->status != 220)
        return fail(FailureType::Remote, "STARTTLS failed: " + sanitize_for_log(line));
      if (!r->last) return BackendEvent::Continue;
      forget_capabilities();
      return BackendEvent::StartTls;

    case State::Xclient:
      if (!r || r->status / 100 != 2)
        return fail(FailureType::RemoteConfig, "XCLIENT failed: " + sanitize_for_log(line));
      if (!r->last) return BackendEvent::Continue;
      if (xclient_pending_ > 0) --xclient_pending_;
      if (xclient_pending_ == 0) state_.set(State::XclientEhlo);
      return BackendEvent::Continue;

    case State::Authenticate:
      if (!r) return fail(FailureType::Protocol, "Invalid AUTH reply: " + sanitize_for_log(line));
      return on_auth_line(r->status, r->last, r->text, line);

    case State::kCount:
      break;
  }
  return fail(FailureType::Internal, "invalid proxy state");
}

BackendEvent BackendLogin::on_tls_ready() {
  if (finished_) return BackendEvent::Failure;
  send_ehlo();
  state_.set(State::TlsEhlo);
  return BackendEvent::Continue;
}

BackendEvent BackendLogin::on_ehlo_done() {
  if (state_.get() == State::Ehlo && starttls_) {
    if (!cap_starttls_) return fail(FailureType::RemoteConfig, "STARTTLS not supported");
    output_ += "STARTTLS\r\n";
    state_.set(State::Starttls);
    return BackendEvent::Continue;
  }
  if (state_.get() != State::XclientEhlo && cap_xclient_ && !not_trusted_ && client_ != nullptr) {
    auto cmds = build_xclient(xclient_attrs_);
    if (!cmds.empty()) {
      xclient_login_sent_ = noauth_ && advertised("LOGIN");
      for (const auto& c : cmds) output_ += c;
      // The receiver answers XCLIENT with a fresh greeting and forgets the
      // EHLO: ask again in the same write.
      send_ehlo();
      xclient_pending_ = static_cast<unsigned>(cmds.size());
      forget_capabilities();
      state_.set(State::Xclient);
      return BackendEvent::Continue;
    }
  }
  return send_login();
}

std::vector<std::string> BackendLogin::build_xclient(
    const std::vector<std::string>& advertised_attrs) const {
  auto has = [&](std::string_view a) {
    for (const auto& x : advertised_attrs)
      if (core::iequals(x, a)) return true;
    return false;
  };
  const login::ClientInfo& c = *client_;
  std::vector<std::pair<std::string_view, std::string>> attrs;
  if (has("HELO")) attrs.emplace_back("HELO", smtp_.helo.empty() ? std::string(kUnavailable) : smtp_.helo);
  if (has("PROTO"))
    attrs.emplace_back("PROTO", smtp_.proto.empty() ? std::string(kUnavailable) : smtp_.proto);
  if (noauth_ && has("LOGIN")) {
    // Always the user portier authenticated (after destuser): the backend
    // trusts this as the login. An upstream's XCLIENT LOGIN is not carried on
    // (unlike Dovecot): it would let the upstream's client pick any identity.
    attrs.emplace_back("LOGIN", user_.empty() ? std::string(kUnavailable) : user_);
  }
  if (has("TTL")) attrs.emplace_back("TTL", std::to_string(common::next_ttl(c)));
  if (has("PORT")) attrs.emplace_back("PORT", std::to_string(c.remote_port));
  if (has("ADDR")) attrs.emplace_back("ADDR", xclient_addr(c.remote_ip));
  if (has("DESTPORT")) attrs.emplace_back("DESTPORT", std::to_string(c.local_port));
  if (has("DESTADDR")) attrs.emplace_back("DESTADDR", xclient_addr(c.local_ip));
  if (has("SESSION") && !c.session_id.empty()) attrs.emplace_back("SESSION", c.session_id);
  if (has("CLIENT-TRANSPORT"))
    attrs.emplace_back("CLIENT-TRANSPORT", c.end_client_tls ? "TLS" : "insecure");
  // The client's SNI name (or a trusted upstream's), as Dovecot 2.4 sends it.
  if (has("DESTNAME") && !c.local_name.empty()) attrs.emplace_back("DESTNAME", c.local_name);
  if (has("FORWARD") && !forward_.empty())
    attrs.emplace_back("FORWARD", common::forward_base64(forward_));

  std::vector<std::string> cmds;
  std::string cur = "XCLIENT";
  for (const auto& [name, value] : attrs) {
    std::string tok = std::string(name) + "=" + xtext_encode(value);
    // A command may not grow past 512 bytes: send what we have, start anew.
    if (cur.size() > 7 && cur.size() + 1 + tok.size() + 2 > kMaxCommandLine) {
      cmds.push_back(cur + "\r\n");
      cur = "XCLIENT";
    }
    cur += ' ';
    cur += tok;
  }
  if (cur.size() > 7) cmds.push_back(cur + "\r\n");
  return cmds;
}

BackendEvent BackendLogin::send_login() {
  if (noauth_) {
    // The backend must accept our XCLIENT LOGIN as the authentication. Without
    // it the session would be unauthenticated: refuse rather than go on.
    if (!xclient_login_sent_)
      return fail(FailureType::RemoteConfig,
                  "proxy_noauth set, but the backend did not accept XCLIENT LOGIN");
    wipe_secrets();
    finished_ = true;
    client_reply_ = kNoauthReply;
    return BackendEvent::Success;
  }
  if (!cap_auth_)
    return fail(FailureType::RemoteConfig, "Authentication support not advertised (TLS required?)");

  // Dovecot sends authzid = destination user, authcid = master or user.
  if (!start_sasl(/*authzid_always=*/true, /*host_port=*/false))
    return fail(FailureType::InternalConfig, "Unsupported SASL mechanism " + mech_);

  std::string ir_raw = sasl_->initial_response();
  const bool send_ir = !core::iequals(mech_, "LOGIN");  // LOGIN is server-first
  const std::string cmd = "AUTH " + mech_;
  if (send_ir) {
    std::string ir = ir_raw.empty() ? std::string("=") : core::base64_encode(ir_raw);
    if (cmd.size() + 1 + ir.size() + 2 > kMaxCommandLine) {
      // Too long for one line: the response follows an empty 334.
      pending_ir_.assign(ir);
      ir_pending_ = true;
      output_ += cmd;
    } else {
      reserve_output(ir.size());
      output_ += cmd;
      output_ += ' ';
      output_ += ir;
    }
    core::secure_zero(ir);
  } else {
    output_ += cmd;
  }
  core::secure_zero(ir_raw);
  output_ += "\r\n";
  state_.set(State::Authenticate);
  return BackendEvent::Continue;
}

BackendEvent BackendLogin::on_auth_line(unsigned status, bool last, std::string_view text,
                                        std::string_view line) {
  if (status == 334 && auth_reply_.empty() && sasl_) {
    if (!last)
      return fail(FailureType::Protocol,
                  "Server returned multi-line challenge: " + sanitize_for_log(line));
    if (ir_pending_) {
      if (!text.empty())
        return fail(FailureType::Protocol,
                    "Server sent unexpected server-first challenge: " + sanitize_for_log(line));
      ir_pending_ = false;
      reserve_output(pending_ir_.size());
      output_ += pending_ir_.view();
      output_ += "\r\n";
      pending_ir_.clear();
      return BackendEvent::Continue;
    }
    switch (answer_challenge(core::trim(text), "", "\r\n")) {
      case Answer::BadBase64:
        return fail(FailureType::Protocol, "Invalid base64 data in AUTH response");
      case Answer::Unexpected:
        return fail(FailureType::Protocol, "Invalid authentication data: unexpected challenge");
      case Answer::Sent:
        break;
    }
    return BackendEvent::Continue;
  }

  // The final reply (possibly multi-line): collected for the client.
  if (auth_reply_.size() >= kMaxAuthReplyLines)
    return fail(FailureType::Protocol, "Backend sent too many AUTH reply lines (>128)");
  std::string_view code;
  std::string_view rest = split_enhanced_code(text, code);
  if (auth_reply_.empty()) auth_enhanced_ = std::string(code);
  auth_reply_.emplace_back(rest);
  if (!last) return BackendEvent::Continue;

  // Render it as ours: the client was promised ENHANCEDSTATUSCODES, so a
  // reply without a code gets the class default (Dovecot's smtp-server does
  // the same).
  const std::string st = std::to_string(status);
  const std::string enh =
      !auth_enhanced_.empty() ? auth_enhanced_ : std::to_string(status / 100) + ".0.0";
  std::string reply;
  for (size_t i = 0; i < auth_reply_.size(); ++i) {
    reply += st;
    reply += i + 1 == auth_reply_.size() ? ' ' : '-';
    reply += enh;
    if (!auth_reply_[i].empty()) {
      reply += ' ';
      reply += sanitize_for_log(auth_reply_[i], 512);
    }
    reply += "\r\n";
  }
  const std::string first_text = auth_reply_.front();
  sasl_.reset();
  finished_ = true;

  if (status / 100 == 2) {
    client_reply_ = std::move(reply);
    return BackendEvent::Success;
  }
  if (status / 100 == 4) return fail(FailureType::AuthTempfail, sanitize_for_log(first_text), reply);
  if (status == 550 && auth_enhanced_ == "5.2.900")
    // [2.4] referral `550 5.2.900 [user@]host[:port] Referral`.
    return redirected(sanitize_for_log(first_text), first_text.substr(0, first_text.find(' ')));
  return fail(FailureType::AuthReplied, sanitize_for_log(first_text), reply);
}

}  // namespace portier::protocols::submission
