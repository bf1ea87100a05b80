#pragma once
// The POP3 pre-login server dialogue (what pop3-login offers before login,
// spec §4.3). Sans-I/O: the engine feeds client bytes, calls next() and
// writes output().
//
// Lifetime: one per client connection, created by make_frontend(); holds a
// reference to the session's ClientInfo (updated by a trusted client's
// XCLIENT/XOIP). Threading: the session's worker thread only.

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "login/protocol.hpp"
#include "sasl/sasl.hpp"

namespace portier::protocols::pop3 {

class Frontend final : public login::Frontend {
 public:
  Frontend(const login::FrontendSettings& settings, login::ClientInfo& client);
  ~Frontend() override;

  void start() override;
  void feed(std::string_view data) override;
  login::FrontendEvent next() override;
  void tls_started() override;
  sasl::Credentials take_credentials() override;
  void auth_failed(login::AuthFailure kind, std::string_view reason) override;
  std::unique_ptr<login::BackendLogin> make_backend_login(
      const login::BackendLoginParams& p) override;
  void proxy_failed(const login::ProxyFailure& f) override;
  void timed_out() override;
  std::string take_pending_input() override;
  /// The engine closes the connection (limits, shutdown): `-ERR <reason>`.
  void goodbye(std::string_view reason) override;

  /// The CAPA reply for the connection's current state (CRLF-terminated lines).
  std::string capa_reply() const;

 private:
  enum class Mode {
    Commands,      // parsing command lines
    SaslResponse,  // AUTH sent "+ ..."; waiting for the client's line
    AuthPending,   // Authenticate returned; the engine owns the next step
    Closed,
  };
  using Event = std::optional<login::FrontendEvent>;  // nullopt = keep parsing

  Event next_line();
  Event dispatch(std::string_view verb, std::string_view args);
  Event cmd_user(std::string_view args);
  Event cmd_pass(std::string_view args);
  Event cmd_auth(std::string_view args);
  Event cmd_stls();
  Event cmd_xclient(std::string_view args);
  Event sasl_response(std::string_view line);
  Event sasl_result(const sasl::Step& step);
  Event bad(std::string_view reply_line);
  Event close_with(std::string_view lines);
  void reply(std::string_view line);
  void auth_error(std::string_view text);  // -ERR [AUTH] unless text starts with '['
  bool cleartext_allowed() const;
  bool mech_advertised(std::string_view mech) const;
  void consume(size_t n);
  void wipe_input();

  login::FrontendSettings settings_;
  login::ClientInfo& client_;
  Mode mode_ = Mode::Commands;
  std::string in_;
  size_t in_pos_ = 0;
  unsigned bad_commands_ = 0;
  std::optional<std::string> last_user_;  // from USER, consumed by PASS
  std::unique_ptr<sasl::ServerMech> sasl_;
  sasl::Credentials credentials_;
};

/// The factory registered in kProtocol.
std::unique_ptr<login::Frontend> make_frontend(const login::FrontendSettings& settings,
                                               login::ClientInfo& client);

}  // namespace portier::protocols::pop3
