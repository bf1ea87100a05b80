#pragma once
// ManageSieve pre-login dialogue (managesieve-login, spec §6.3, RFC 5804):
// CAPABILITY, STARTTLS, AUTHENTICATE, NOOP, XCLIENT. Sans-I/O, on the
// session's worker.
//
// Owns: command dispatch, the capability lines and reply texts. Uses:
// protocols/common (input, SASL exchange, counting), the ManageSieve parser,
// login::ClientUpdate (a trusted XCLIENT).

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "login/protocol.hpp"
#include "protocols/common/frontend_base.hpp"
#include "protocols/managesieve/parser.hpp"
#include "sasl/sasl.hpp"

namespace portier::protocols::managesieve {

/// The SIEVE capability advertised before login: the backend's extensions
/// cannot be known yet, so this is Dovecot Pigeonhole's default list.
inline constexpr std::string_view kSieveExtensions =
    "fileinto reject envelope encoded-character vacation subaddress comparator-i;ascii-numeric "
    "relational regex imap4flags copy include variables body enotify environment mailbox date "
    "index ihave duplicate mime foreverypart extracttext";
inline constexpr std::string_view kImplementation = "portier";

class Frontend final : public common::FrontendBase {
 public:
  Frontend(const login::FrontendSettings& settings, login::ClientInfo& client);

  std::unique_ptr<login::BackendLogin> make_backend_login(
      const login::BackendLoginParams& p) override;

  /// The capability lines (each with CRLF) for the connection's current
  /// TLS/secured/trusted state.
  std::string capabilities() const;

 private:
  void greet() override;
  void refuse_login(login::AuthFailure kind, std::string_view reason) override;
  bool refer(const login::Referral& r) override;
  Event parse() override;
  void send_challenge(std::string_view b64) override;
  Event sasl_refused(sasl::Outcome outcome, std::string_view text) override;
  void on_tls_started() override;
  void send_bye(Bye kind, std::string_view text) override;

  Event next_sasl_response();
  Event on_parse_error();
  Event dispatch(Command& cmd);
  Event cmd_capability(const Command& cmd);
  Event cmd_starttls(const Command& cmd);
  Event cmd_authenticate(Command& cmd);
  Event cmd_noop(const Command& cmd);
  Event cmd_xclient(const Command& cmd);
  Event invalid(std::string_view reply_text);
  Event close_with(std::string_view bye_text);
  void no(std::string_view text, std::string_view code = {});

  CommandParser parser_;
};

/// The factory registered in kProtocol.
std::unique_ptr<login::Frontend> make_frontend(const login::FrontendSettings& settings,
                                               login::ClientInfo& client);

}  // namespace portier::protocols::managesieve
