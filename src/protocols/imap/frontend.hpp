#pragma once
// IMAP pre-login dialogue (imap-login before login, spec §3.8): CAPABILITY,
// ID, STARTTLS, LOGIN, AUTHENTICATE with SASL-IR. Sans-I/O, on the session's
// worker; the engine feeds bytes, calls next() and writes output().
//
// Owns: IMAP command dispatch, the capability list and reply texts. Uses:
// protocols/common (input, SASL exchange, counting), the IMAP parser,
// login::ClientUpdate (a trusted ID).

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "login/protocol.hpp"
#include "protocols/common/frontend_base.hpp"
#include "protocols/imap/parser.hpp"
#include "sasl/sasl.hpp"

namespace portier::protocols::imap {

class Frontend final : public common::FrontendBase {
 public:
  Frontend(const login::FrontendSettings& settings, login::ClientInfo& client);

  std::unique_ptr<login::BackendLogin> make_backend_login(
      const login::BackendLoginParams& p) override;

  /// The pre-login capability list for the connection's current TLS/secured
  /// state (cached; recomputed only when that state changes).
  const std::string& capabilities();
  /// The tag of the login command in progress (or last attempted).
  const std::string& login_tag() const { return tag_; }
  /// Whether the client sent CAPABILITY before login and before STARTTLS.
  bool client_sent_capability() const { return client_sent_capability_; }

 private:
  void greet() override;
  void refuse_login(login::AuthFailure kind, std::string_view reason) override;
  bool refer(const login::Referral& r) override;
  Event parse() override;
  Event sasl_refused(sasl::Outcome outcome, std::string_view text) override;
  void on_tls_started() override;
  void failure_reply(std::string_view text) override;
  void send_bye(Bye kind, std::string_view text) override;

  Event next_sasl_response();
  Event on_parse_error();
  Event dispatch(Command& cmd);
  Event cmd_capability(const Command& cmd);
  Event cmd_starttls(const Command& cmd);
  Event cmd_login(Command& cmd);
  Event cmd_authenticate(Command& cmd);
  Event cmd_id(const Command& cmd);
  Event bad_command(std::string_view tag);
  Event privacy_required(std::string_view tag, bool password_sent);
  Event close_with(std::string_view bye_line);
  void reply(std::string_view tag, std::string_view text);

  CommandParser parser_;
  std::string tag_;
  bool client_sent_capability_ = false;
  bool did_starttls_ = false;
  bool id_seen_ = false;
  bool ir_exposed_ = false;  // the AUTHENTICATE in progress carried a real initial response
  std::string caps_;
  int caps_key_ = -1;
};

/// The factory registered in kProtocol.
std::unique_ptr<login::Frontend> make_frontend(const login::FrontendSettings& settings,
                                               login::ClientInfo& client);

}  // namespace portier::protocols::imap
