#pragma once
// The ManageSieve proxy-client machine: logs in to one backend connection on
// behalf of a client (pigeonhole managesieve-proxy.c behaviour, spec §6.1).
// Sans-I/O: the engine feeds backend lines and writes output().
//
// Created by the ManageSieve Frontend for each connection attempt; copies
// what it needs from BackendLoginParams except `client`, which must outlive
// it (the session owns the ClientInfo). The password copy is wiped once the
// SASL client has it and on destruction. Owns: the ManageSieve login
// dialogue. Uses: protocols/common.

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "login/protocol.hpp"
#include "protocols/common/backend_base.hpp"
#include "protocols/managesieve/parser.hpp"
#include "protocols/managesieve/state.hpp"
#include "sasl/sasl.hpp"

namespace portier::protocols::managesieve {

class BackendLogin final : public common::BackendBase {
 public:
  explicit BackendLogin(const login::BackendLoginParams& params);
  ~BackendLogin() override;

  login::BackendEvent on_line(std::string_view line) override;
  login::BackendEvent on_tls_ready() override;
  std::string state() const override { return state_.render(); }

  /// The XCLIENT command this machine sends (with CRLF); exposed for tests.
  std::string build_xclient_command() const;

 private:
  login::BackendEvent on_response(std::string_view raw);
  login::BackendEvent on_capability_line(std::string_view raw, const Response& r);
  login::BackendEvent after_capabilities();
  login::BackendEvent send_authenticate();
  login::BackendEvent on_auth_reply(std::string_view raw, const Response& r);

  ProxyState state_;
  bool cap_sasl_ = false;
  bool cap_starttls_ = false;
  bool cap_xclient_ = false;
  // A response that continues past a literal: the bytes so far, and how many
  // literal bytes are still to come.
  std::string pending_;
  size_t literal_left_ = 0;
  bool pending_active_ = false;
};

/// A backend line made safe for a log reason: control bytes become '?', and
/// the text is cut to `max` bytes with "..." appended.
std::string sanitize_for_log(std::string_view s, size_t max = 100);

}  // namespace portier::protocols::managesieve
