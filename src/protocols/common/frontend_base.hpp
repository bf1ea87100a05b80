#pragma once
// What every protocol's pre-login Frontend does the same way, once: the
// input buffer (login::PreloginInput), the SASL server exchange
// (sasl::ServerExchange: mechanism offered?, cleartext policy, initial
// response, base64, "*", continuation, wiping), the credentials handed to
// the engine, invalid-command counting and the Commands / SaslResponse /
// AuthPending / Closed mode machine. A protocol derives from it and keeps
// only its command dispatch, its framing ("+ ", "334 ", a quoted string) and
// its reply texts.
//
// Owns: the input, the exchange, the credentials. Uses: login (protocol.hpp,
// PreloginInput), sasl. Threading: the session's worker only.

#include <optional>
#include <string>
#include <string_view>

#include "core/secure.hpp"
#include "login/command_budget.hpp"
#include "login/prelogin_input.hpp"
#include "login/protocol.hpp"
#include "sasl/exchange.hpp"

namespace portier::protocols::common {

/// A protocol's reply texts for the SASL outcomes other than Challenge/Done.
struct SaslTexts {
  std::string_view failed, unsupported, cleartext_denied, bad_initial_base64, bad_base64,
      aborted;
  std::string_view of(sasl::Outcome o) const;
};

/// A protocol's reply texts for a proxy attempt that failed without a
/// backend reply to relay (login::ProxyFailure), rendered by failure_reply(),
/// and its timeout text while a SASL response is awaited. An empty entry
/// means `unavailable`.
struct FailureTexts {
  // Connect/internal/remote/protocol failures, referrals, AuthTempfail.
  std::string_view unavailable;
  std::string_view auth_failed;  // AuthReplied
  std::string_view config = {};  // configuration failures, the login not answered
  std::string_view limit = {};   // LimitReached
  std::string_view sasl_timeout = {};  // empty: "Disconnected for inactivity."
};

/// A command parser's Limits (IMAP, ManageSieve) from the settings.
template <class Limits>
Limits parser_limits(const login::FrontendSettings& s) {
  return Limits{s.max_line_length, s.max_literal_size, s.max_command_size,
                login::sasl_line_limit(s)};
}

/// One per client connection, created by the protocol's make_frontend();
/// holds a reference to the session's ClientInfo, which a trusted client's
/// ID/XCLIENT may update (login::ClientUpdate).
class FrontendBase : public login::Frontend {
 public:
  FrontendBase(const login::FrontendSettings& settings, login::ClientInfo& client,
               const SaslTexts& sasl_texts, const FailureTexts& failure_texts);

  /// Queue the greeting (greet()); with implicit TLS the end client is on
  /// TLS unless a trusted hop says otherwise later.
  void start() final;
  /// The engine refused the login: credentials forgotten, commands parsed
  /// again, the protocol's reply queued (refuse_login()).
  void auth_failed(login::AuthFailure kind, std::string_view reason,
                   std::string_view sasl_challenge = {}) final;
  bool failure_answer_pending() const final { return answer_pending_; }
  /// The passdb referred the client: credentials forgotten, the protocol's
  /// referral reply queued (refer()); closed when refer() says the reply
  /// ends the session (an OK referral, as Dovecot: "Login with referral").
  void referred(const login::Referral& r) final;
  void feed(std::string_view data) final;
  login::FrontendEvent next() final;
  sasl::Credentials take_credentials() final;
  std::string take_pending_input() final;
  /// TLS is up on the client leg: everything read before is dropped, then
  /// the protocol forgets what it learned in plaintext (on_tls_started()).
  void tls_started() final;
  /// The backend login failed: the backend's own reply if it gave one,
  /// else the protocol's FailureTexts entry (failure_reply()); behind
  /// f.sasl_challenge when there is one.
  void proxy_failed(const login::ProxyFailure& f) final;
  /// The pre-login timeout: send_bye(Bye::Timeout, ...), then closed.
  void timed_out() final;
  /// The engine closes the connection: send_bye(Bye::Goodbye, reason), then closed.
  void goodbye(std::string_view reason) final;

 protected:
  enum class Mode {
    Commands,      // parsing commands
    SaslResponse,  // a challenge went out; waiting for the client's response
    AuthPending,   // Authenticate returned; the engine owns the next step
    Closed,
  };
  using FrontendEvent = login::FrontendEvent;
  using AuthFailure = login::AuthFailure;
  using Event = std::optional<FrontendEvent>;  // nullopt = keep parsing

  /// Queue the protocol's greeting.
  virtual void greet() = 0;
  /// Queue the reply to a login the engine refused.
  virtual void refuse_login(login::AuthFailure kind, std::string_view reason) = 0;
  /// Queue the reply to a login referral (protocols/common/referral.hpp
  /// renders the target); true when that reply ends the session.
  virtual bool refer(const login::Referral& r) = 0;
  /// Parse buffered input in Commands or SaslResponse mode. By default for
  /// a line protocol (POP3, Submission): one line, the SASL response or a
  /// command for command_line().
  virtual Event parse();
  /// With the default parse(): a command line split at its first space; the
  /// arguments are the rest of the line as is (a password may hold spaces).
  virtual Event command_line(std::string_view verb, std::string_view args) { return closed(); }
  /// With the default parse(): the line exceeded login.max_line_length.
  virtual Event line_too_long() { return closed(); }
  /// Queue a SASL challenge (base64) with the protocol's framing; by
  /// default `+ <b64>` (IMAP, POP3).
  virtual void send_challenge(std::string_view b64);
  /// Render a SASL outcome other than Challenge/Done (the mode is already
  /// Commands again); `text` is the protocol's SaslTexts entry for it. By
  /// default the text is the whole reply line.
  virtual Event sasl_refused(sasl::Outcome outcome, std::string_view text);
  /// After tls_started() dropped the input.
  virtual void on_tls_started() {}
  /// Queue a login failure reply whose text is `text`; by default the text
  /// is the whole line (IMAP adds the tag).
  virtual void failure_reply(std::string_view text) { reply_line(text); }
  enum class Bye { Timeout, Goodbye };
  /// Queue the protocol's last words before closing (timed_out(), goodbye()).
  virtual void send_bye(Bye kind, std::string_view text) = 0;

  /// AUTHENTICATE/AUTH <mech> [<ir>]: runs the exchange's first step.
  Event sasl_begin(std::string_view mech, std::optional<std::string_view> ir,
                   sasl::IrSyntax syntax = sasl::IrSyntax::EqualsIsEmpty);
  /// The client's response line to the last challenge ("*" aborts); the
  /// answer to a failure challenge (any text) releases the held reply.
  Event sasl_respond(std::string_view text);
  /// The client's response could not be read (ManageSieve: not a string):
  /// the exchange is over (a held failure reply goes out).
  void sasl_cancel();
  /// A cleartext login command (IMAP LOGIN, POP3 PASS): hand `user` and
  /// `password` to the engine.
  Event authenticate(std::string user, std::string_view password);
  /// The engine refused the login or the backend failed: forget the
  /// credentials and parse commands again.
  void login_over();
  /// Stop for good: input wiped, exchange forgotten; returns Close.
  Event closed();
  /// Queue the last `lines` and stop; the close reason is what Dovecot logs:
  /// "Too many invalid commands", or the text after `bye_prefix`.
  Event close_lines(std::string_view lines, std::string_view bye_prefix);
  /// STARTTLS/STLS: `reply` gets the protocol's text for TLS already active,
  /// TLS not configured, or go ahead; then the input is wiped.
  template <class Reply>
  Event start_tls(Reply reply, std::string_view active, std::string_view not_enabled,
                  std::string_view go_ahead) {
    if (client_.tls || !client_.tls_configured) {
      reply(client_.tls ? active : not_enabled);
      return std::nullopt;
    }
    reply(go_ahead);
    // Anything pipelined after STARTTLS arrived in plaintext and must not be
    // executed as if it came over TLS (CVE-2011-0411 style command injection).
    in_.wipe();
    return FrontendEvent::StartTls;
  }
  /// Run a command parser (IMAP, ManageSieve) over the buffered input and
  /// consume what it used.
  template <class Parser, class Fn>
  auto parse_input(Parser& parser, Fn fn) {
    size_t used = 0;
    auto r = fn(parser, in_.avail(), used);
    in_.consume(used);
    return r;
  }
  /// Queue `line` and CRLF.
  void reply_line(std::string_view line) {
    output_ += line;
    output_ += "\r\n";
  }
  /// Command-parser protocols (IMAP, ManageSieve): run `parser` over the
  /// input; a complete command goes to `dispatch` and its arguments (a
  /// password, an initial response) are wiped afterwards; a parse error goes
  /// to `on_error`. IMAP's synchronizing literal gets its "+ OK".
  template <class Parser, class Dispatch, class OnError>
  Event next_command(Parser& parser, Dispatch dispatch, OnError on_error) {
    using R = typename Parser::Result;
    if (in_.avail().empty()) return FrontendEvent::NeedInput;
    const R r =
        parse_input(parser, [](auto& p, auto in, size_t& used) { return p.parse(in, used); });
    if constexpr (requires { R::Continuation; }) {
      if (r == R::Continuation) {
        output_ += "+ OK\r\n";
        return std::nullopt;
      }
    }
    if (r == R::NeedMore) return FrontendEvent::NeedInput;
    if (r == R::Error) return on_error();
    if (r != R::Command) return std::nullopt;  // an empty line
    auto& cmd = parser.command();
    Event ev = dispatch(cmd);
    for (auto& a : cmd.args) core::secure_zero(a.value);
    return ev;
  }
  /// The line limit for the SASL response awaited now: login::sasl_line_limit
  /// for an OAuth mechanism's (a 64 KiB token), else login::line_limit.
  size_t sasl_response_limit() const;
  /// Count one invalid command; true when login.max_invalid_commands is reached.
  bool invalid_limit_reached();
  /// A good command (POP3 counts bad commands in a row).
  void valid_command() { invalid_commands_ = 0; }

  /// Dovecot's rule: cleartext mechanisms on a secured connection, or when
  /// login.allow_cleartext says so.
  bool cleartext_allowed() const;
  /// `mech` is configured and, if it is a cleartext one, allowed here.
  bool mech_advertised(std::string_view mech) const;

  login::FrontendSettings settings_;
  login::ClientInfo& client_;
  login::PreloginInput in_;
  Mode mode_ = Mode::Commands;

 private:
  Event sasl_outcome(sasl::Outcome o);
  void render_proxy_failure(const login::ProxyFailure& f);
  /// OAuth failures: queue `b64` as a SASL continuation and hold what
  /// `render` queues until the client answered it (sasl_respond).
  template <class Render>
  void behind_challenge(std::string_view b64, Render render);
  void release_held_reply();

  const SaslTexts& sasl_texts_;
  const FailureTexts& failure_texts_;
  sasl::ServerExchange sasl_;
  sasl::Credentials credentials_;
  std::string login_mech_;       // the mechanism of the login being verified (take_credentials)
  unsigned invalid_commands_ = 0;
  bool answer_pending_ = false;  // a failure challenge is out
  std::string held_reply_;       // the final reply behind it
};

}  // namespace portier::protocols::common
