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
/// and its timeout text while a SASL response is awaited.
struct FailureTexts {
  std::string_view unavailable;  // connect/internal/remote/protocol failures, referrals
  std::string_view config;       // configuration failures, the login not answered
  std::string_view tempfail;     // AuthTempfail
  std::string_view auth_failed;  // AuthReplied
  std::string_view limit;        // LimitReached
  std::string_view sasl_timeout = {};  // empty: "Disconnected for inactivity."
};

/// One per client connection, created by the protocol's make_frontend();
/// holds a reference to the session's ClientInfo, which a trusted client's
/// ID/XCLIENT may update (login::ClientUpdate).
class FrontendBase : public login::Frontend {
 public:
  FrontendBase(const login::FrontendSettings& settings, login::ClientInfo& client,
               const SaslTexts& sasl_texts, const FailureTexts& failure_texts);

  void feed(std::string_view data) final;
  login::FrontendEvent next() final;
  sasl::Credentials take_credentials() final;
  std::string take_pending_input() final;
  /// TLS is up on the client leg: everything read before is dropped, then
  /// the protocol forgets what it learned in plaintext (on_tls_started()).
  void tls_started() final;
  /// The backend login failed: the backend's own reply if it gave one,
  /// else the protocol's FailureTexts entry (failure_reply()).
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
  using Event = std::optional<login::FrontendEvent>;  // nullopt = keep parsing

  /// Parse buffered input in Commands or SaslResponse mode.
  virtual Event parse() = 0;
  /// Queue a SASL challenge (base64) with the protocol's framing.
  virtual void send_challenge(std::string_view b64) = 0;
  /// Render a SASL outcome other than Challenge/Done (the mode is already
  /// Commands again); `text` is the protocol's SaslTexts entry for it.
  virtual Event sasl_refused(sasl::Outcome outcome, std::string_view text) = 0;
  /// After tls_started() dropped the input.
  virtual void on_tls_started() {}
  /// Queue a login failure reply whose text is `text` (IMAP adds the tag).
  virtual void failure_reply(std::string_view text);
  enum class Bye { Timeout, Goodbye };
  /// Queue the protocol's last words before closing (timed_out(), goodbye()).
  virtual void send_bye(Bye kind, std::string_view text) = 0;

  /// AUTHENTICATE/AUTH <mech> [<ir>]: runs the exchange's first step.
  Event sasl_begin(std::string_view mech, std::optional<std::string_view> ir,
                   sasl::IrSyntax syntax = sasl::IrSyntax::EqualsIsEmpty);
  /// The client's response line to the last challenge ("*" aborts).
  Event sasl_respond(std::string_view text);
  /// The client's response could not be read (ManageSieve: not a string):
  /// the exchange is over.
  void sasl_cancel();
  /// A cleartext login command (IMAP LOGIN, POP3 PASS): hand `user` and
  /// `password` to the engine.
  Event authenticate(std::string user, std::string_view password);
  /// The engine refused the login or the backend failed: forget the
  /// credentials and parse commands again.
  void login_over();
  /// Stop for good: input wiped, exchange forgotten; returns Close.
  Event closed();
  /// Run a command parser (IMAP, ManageSieve) over the buffered input and
  /// consume what it used.
  template <class Parser, class Fn>
  auto parse_input(Parser& parser, Fn fn) {
    size_t used = 0;
    auto r = fn(parser, in_.avail(), used);
    in_.consume(used);
    return r;
  }
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

  const SaslTexts& sasl_texts_;
  const FailureTexts& failure_texts_;
  sasl::ServerExchange sasl_;
  sasl::Credentials credentials_;
  unsigned invalid_commands_ = 0;
};

}  // namespace portier::protocols::common
