#pragma once
// The POP3 pre-login server dialogue (what pop3-login offers before login,
// spec §4.3). Sans-I/O: the engine feeds client bytes, calls next() and
// writes output().
//
// Lifetime: one per client connection, created by make_frontend(); holds a
// reference to the session's ClientInfo (updated by a trusted client's
// XCLIENT/XOIP). Threading: the session's worker thread only.
//
// Owns: POP3 command dispatch and reply texts. Uses: protocols/common
// (input, SASL exchange), login::ClientUpdate (trusted XCLIENT).

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

  void start() override;
  void tls_started() override;
  void auth_failed(login::AuthFailure kind, std::string_view reason) override;
  std::unique_ptr<login::BackendLogin> make_backend_login(
      const login::BackendLoginParams& p) override;
  void proxy_failed(const login::ProxyFailure& f) override;
  void timed_out() override;
  /// The engine closes the connection (limits, shutdown): `-ERR <reason>`.
  void goodbye(std::string_view reason) override;

  /// The CAPA reply for the connection's current state (CRLF-terminated lines).
  std::string capa_reply() const;

 private:
  Event parse() override;
  void send_challenge(std::string_view b64) override;
  Event sasl_refused(sasl::Outcome outcome) override;

  Event dispatch(std::string_view verb, std::string_view args);
  Event cmd_user(std::string_view args);
  Event cmd_pass(std::string_view args);
  Event cmd_auth(std::string_view args);
  Event cmd_stls();
  Event cmd_xclient(std::string_view args);
  Event bad(std::string_view reply_line);
  Event close_with(std::string_view lines);
  void reply(std::string_view line);
  void auth_error(std::string_view text);  // -ERR [AUTH] unless text starts with '['
  void forget_user();

  std::optional<std::string> last_user_;  // from USER, consumed by PASS
};

/// The factory registered in kProtocol.
std::unique_ptr<login::Frontend> make_frontend(const login::FrontendSettings& settings,
                                               login::ClientInfo& client);

}  // namespace portier::protocols::pop3
