#pragma once
// The IMAP proxy-client machine: logs in to one backend connection on behalf
// of a client (Dovecot imap-proxy.c behaviour, spec §3.1-§3.6). Sans-I/O: the
// engine feeds backend lines and writes output().
//
// Created by the IMAP Frontend (make_backend_login) for each connection
// attempt; it copies everything it needs from BackendLoginParams except
// `client`, which must outlive it (the session owns the ClientInfo).
// The password (a core::Secret) is wiped when it has been written and on
// destruction. Owns: the IMAP login dialogue. Uses: protocols/common.

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "login/protocol.hpp"
#include "protocols/common/backend_base.hpp"
#include "protocols/imap/state.hpp"
#include "sasl/sasl.hpp"

namespace portier::protocols::imap {

class BackendLogin final : public common::BackendBase {
 public:
  /// `client_tag`: the tag of the client's LOGIN/AUTHENTICATE command (the
  /// success or failure reply goes out under it). `client_sent_capability`:
  /// the client sent CAPABILITY before login and before any STARTTLS, so it
  /// gets an untagged `* CAPABILITY` instead of a resp-code (§3.5).
  BackendLogin(const login::BackendLoginParams& params, std::string client_tag,
               bool client_sent_capability);
  ~BackendLogin() override;

  login::BackendEvent on_line(std::string_view line) override;
  login::BackendEvent on_tls_ready() override;
  std::string state() const override { return state_.render(); }

  /// The `I ID (...)` line (with CRLF) this machine sends when the banner
  /// lists ID; requires a ClientInfo. Exposed for tests.
  std::string build_id_command() const;

 private:
  login::BackendEvent on_banner(std::string_view line);
  login::BackendEvent on_continuation(std::string_view line);
  login::BackendEvent on_login_reply(std::string_view rest);
  /// 1 = STARTTLS queued, 0 = not wanted, -1 = failed (failure_ set).
  int write_starttls();
  /// 0 = queued (or deferred until `C OK`), -1 = failed (failure_ set).
  int write_login();

  // mech_ (from BackendBase): the effective mechanism; empty = LOGIN command.
  bool tls_;
  bool nopipelining_;

  std::string client_tag_;
  bool client_sent_capability_;

  ProxyState state_;
  bool seen_banner_ = false;
  bool sasl_ir_ = false;
  bool logindisabled_ = false;
  std::optional<std::string> backend_caps_;
  bool capability_sent_ = false;
  bool starttls_sent_ = false;
  bool starttls_done_ = false;
  bool login_sent_ = false;
  std::string untagged_;  // backend untagged lines to forward to the client
};

/// Backend capability list helpers (space separated, case-insensitive).
bool has_capability(std::string_view caps, std::string_view cap);

/// A backend line made safe for a log reason: control bytes become '?', and
/// the text is cut to `max` bytes with "..." appended.
std::string sanitize_for_log(std::string_view s, size_t max = 100);

}  // namespace portier::protocols::imap
