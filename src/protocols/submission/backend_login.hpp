#pragma once
// The Submission proxy-client machine: logs in to one backend connection on
// behalf of a client (Dovecot submission-proxy.c behaviour, spec §5.1-§5.4).
// Sans-I/O: the engine feeds backend lines and writes output().
//
// Created by the Submission Frontend (make_backend_login) for each connection
// attempt; it copies everything it needs from BackendLoginParams except
// `client`, which must outlive it (the session owns the ClientInfo).
// The password (a core::Secret) is wiped once the AUTH line is built and on
// destruction. Owns: the SMTP login dialogue. Uses: protocols/common.

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "login/protocol.hpp"
#include "protocols/common/backend_base.hpp"
#include "protocols/submission/state.hpp"
#include "sasl/sasl.hpp"

namespace portier::protocols::submission {

/// What the client (or a trusted upstream's XCLIENT) told the Frontend that
/// the backend's XCLIENT should carry on.
struct ClientSmtpInfo {
  std::string helo;   ///< EHLO/HELO domain; empty = [UNAVAILABLE]
  std::string proto;  ///< SMTP | ESMTP | LMTP; empty = [UNAVAILABLE]
  /// An upstream's XCLIENT LOGIN. Never sent: XCLIENT LOGIN= (proxy_noauth)
  /// is always the user portier authenticated.
  std::string login;
};

/// Longest command line the machine writes, CRLF included (RFC 5321 §4.5.3.1.4).
inline constexpr size_t kMaxCommandLine = 512;
/// Most reply lines accepted for the final AUTH reply.
inline constexpr size_t kMaxAuthReplyLines = 128;

class BackendLogin final : public common::BackendBase {
 public:
  BackendLogin(const login::BackendLoginParams& params, ClientSmtpInfo smtp);
  ~BackendLogin() override;

  login::BackendEvent on_line(std::string_view line) override;
  login::BackendEvent on_tls_ready() override;
  std::string state() const override { return state_.render(); }
  State state_value() const { return state_.get(); }

  /// The XCLIENT commands (CRLF-terminated, each at most 512 bytes) for the
  /// attributes in `advertised`; empty when none of ours is advertised.
  /// Exposed for tests.
  std::vector<std::string> build_xclient(const std::vector<std::string>& advertised) const;

 private:
  login::BackendEvent on_ehlo_done();
  login::BackendEvent send_login();
  login::BackendEvent on_auth_line(unsigned status, bool last, std::string_view text,
                                   std::string_view line);
  void send_ehlo();
  void forget_capabilities();
  bool advertised(std::string_view attr) const;
  void wipe_secrets();

  std::string hostname_;
  bool noauth_;
  ClientSmtpInfo smtp_;

  ProxyState state_;
  unsigned reply_status_ = 0;  // status of an unfinished multi-line reply
  // Backend capabilities from the current EHLO reply.
  bool cap_xclient_ = false;
  bool cap_starttls_ = false;
  bool cap_auth_ = false;
  bool cap_enhanced_ = false;
  std::vector<std::string> xclient_attrs_;
  bool xclient_login_sent_ = false;
  unsigned xclient_pending_ = 0;  // XCLIENT replies still expected
  // AUTH.
  core::Secret pending_ir_;       // initial response held back for an empty 334
  bool ir_pending_ = false;
  std::vector<std::string> auth_reply_;  // final reply lines: text without code
  std::string auth_enhanced_;            // enhanced code of the first line
};

}  // namespace portier::protocols::submission
