#pragma once
// POP3 pre-login dialogue (pop3-login before login, spec §4.3): CAPA,
// USER/PASS, AUTH, STLS, XCLIENT/XOIP. Sans-I/O, on the session's worker.
//
// Owns: POP3 command dispatch, CAPA and reply texts. Uses: protocols/common
// (input, SASL exchange, counting), login::ClientUpdate (a trusted XCLIENT).

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "login/protocol.hpp"
#include "protocols/common/frontend_base.hpp"
#include "sasl/sasl.hpp"

namespace portier::protocols::pop3 {

class Frontend final : public common::FrontendBase {
 public:
  Frontend(const login::FrontendSettings& settings, login::ClientInfo& client);
  ~Frontend() override;

  std::unique_ptr<login::BackendLogin> make_backend_login(
      const login::BackendLoginParams& p) override;

  /// The CAPA reply for the connection's current state (CRLF-terminated lines).
  std::string capa_reply() const;

 private:
  void greet() override;
  void refuse_login(login::AuthFailure kind, std::string_view reason) override;
  bool refer(const login::Referral& r) override;
  void on_tls_started() override;
  void send_bye(Bye kind, std::string_view text) override;

  Event command_line(std::string_view verb, std::string_view args) override;
  Event line_too_long() override;
  Event cmd_user(std::string_view args);
  Event cmd_pass(std::string_view args);
  Event cmd_auth(std::string_view args);
  Event cmd_stls();
  Event cmd_xclient(std::string_view args);
  Event bad(std::string_view line);
  Event close_with(std::string_view lines);
  void auth_error(std::string_view text);  // -ERR [AUTH] unless text starts with '['
  void forget_user();

  std::optional<std::string> last_user_;  // from USER, consumed by PASS
};

/// The factory registered in kProtocol.
std::unique_ptr<login::Frontend> make_frontend(const login::FrontendSettings& settings,
                                               login::ClientInfo& client);

}  // namespace portier::protocols::pop3
