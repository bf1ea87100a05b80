#pragma once
// Submission pre-login dialogue (submission-login before AUTH, spec §5.5):
// EHLO/HELO, STARTTLS, AUTH, XCLIENT. Sans-I/O, on the session's worker.
//
// Owns: SMTP command dispatch, the EHLO reply, the client's HELO/PROTO for
// the backend's XCLIENT, reply texts. Uses: protocols/common (input, SASL
// exchange, counting), login::ClientUpdate (a trusted XCLIENT).

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "login/protocol.hpp"
#include "protocols/common/frontend_base.hpp"
#include "protocols/submission/backend_login.hpp"
#include "sasl/sasl.hpp"

namespace portier::protocols::submission {

/// XCLIENT attributes this Frontend accepts from a trusted upstream.
inline constexpr std::string_view kXclientAttributes =
    "ADDR PORT PROTO HELO LOGIN SESSION CLIENT-TRANSPORT TTL TIMEOUT DESTADDR DESTPORT";

class Frontend final : public common::FrontendBase {
 public:
  Frontend(const login::FrontendSettings& settings, login::ClientInfo& client);

  std::unique_ptr<login::BackendLogin> make_backend_login(
      const login::BackendLoginParams& p) override;

  /// The EHLO reply for the connection's current state (CRLF-terminated lines).
  std::string ehlo_reply() const;
  /// What the backend's XCLIENT will carry (HELO, PROTO, upstream LOGIN).
  const ClientSmtpInfo& smtp_info() const { return smtp_; }

 private:
  void greet() override;
  void refuse_login(login::AuthFailure kind, std::string_view reason) override;
  bool refer(const login::Referral& r) override;
  void send_challenge(std::string_view b64) override;
  void on_tls_started() override;
  void send_bye(Bye kind, std::string_view text) override;

  Event command_line(std::string_view verb, std::string_view args) override;
  Event line_too_long() override;
  Event cmd_ehlo(std::string_view args, bool ehlo);
  Event cmd_starttls(std::string_view args);
  Event cmd_auth(std::string_view args);
  Event cmd_xclient(std::string_view args);
  Event invalid(std::string_view line);
  Event close_with(std::string_view line);

  bool helo_seen_ = false;       // EHLO/HELO since the greeting (or STARTTLS/XCLIENT)
  std::string client_helo_;      // the client's own EHLO/HELO domain
  std::string client_proto_;     // ESMTP after EHLO, SMTP after HELO
  ClientSmtpInfo upstream_;      // from a trusted XCLIENT
  ClientSmtpInfo smtp_;          // effective: upstream wins
};

/// The factory registered in kProtocol.
std::unique_ptr<login::Frontend> make_frontend(const login::FrontendSettings& settings,
                                               login::ClientInfo& client);

}  // namespace portier::protocols::submission
