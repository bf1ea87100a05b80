#pragma once
// The POP3 proxy-client machine: logs in to one backend connection on behalf
// of a client (Dovecot pop3-proxy.c behaviour, spec §4.1, §4.2, §7.3).
// Sans-I/O: the engine feeds backend lines and writes output().
//
// Created by the POP3 Frontend (make_backend_login) for each connection
// attempt; it copies what it needs from BackendLoginParams except `client`,
// which must outlive it (the session owns the ClientInfo). The password copy
// (a core::Secret) is wiped as soon as the PASS/AUTH line is written and on
// destruction. Owns: the POP3 login dialogue. Uses: protocols/common.

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "login/protocol.hpp"
#include "protocols/common/backend_base.hpp"
#include "protocols/pop3/state.hpp"
#include "sasl/sasl.hpp"

namespace portier::protocols::pop3 {

/// The client reply for a backend that answered the login with something
/// other than `-ERR ` (Dovecot's wording, §4.1 step 7).
inline constexpr std::string_view kBackendAuthFailedReply = "-ERR Authentication failed.\r\n";
/// The client reply for a backend `-ERR` whose text portier hides (§13.8).
inline constexpr std::string_view kMaskedAuthFailedReply = "-ERR [AUTH] Authentication failed.\r\n";

class BackendLogin final : public common::BackendBase {
 public:
  explicit BackendLogin(const login::BackendLoginParams& params);
  ~BackendLogin() override;

  login::BackendEvent on_line(std::string_view line) override;
  login::BackendEvent on_tls_ready() override;
  std::string state() const override { return state_.render(); }
  State state_value() const { return state_.get(); }

  /// The XCLIENT command (CRLF-terminated) for the current ClientInfo.
  /// Values that could break the line (spaces, control bytes) are left out.
  /// Exposed for tests.
  std::string build_xclient() const;

 private:
  login::BackendEvent send_login();
  login::BackendEvent sasl_continue(std::string_view payload);
  login::BackendEvent login_failed(std::string_view line);

  // mech_ (from BackendBase): empty = USER/PASS.
  ProxyState state_;
  bool xclient_usable_ = false;  // banner had ` [XCLIENT]` right after `+OK`
};

}  // namespace portier::protocols::pop3
