#pragma once
// What every protocol's BackendLogin (proxy-client machine) does the same
// way, once: the copied parameters with the password as a core::Secret, the
// failure bookkeeping, the SASL client start (authzid/authcid for master
// logins) and the answer to a base64 challenge, plus the small renderings of
// ClientInfo the XCLIENT/ID commands share.
//
// Every buffer that held the password or a SASL payload is wiped: the
// password lives in password_ until the login command is built and is then
// cleared; base64 payloads are appended to output_ (which the engine wipes
// with wipe_output()) without leaving temporaries behind.
//
// Owns: the copied parameters, the ClientMech. Uses: login (protocol.hpp),
// sasl, core. Threading: the session's worker only.

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <asio/ip/address.hpp>

#include "core/secret.hpp"
#include "login/protocol.hpp"
#include "sasl/sasl.hpp"

namespace portier::protocols::common {

class BackendBase : public login::BackendLogin {
 protected:
  explicit BackendBase(const login::BackendLoginParams& p);
  ~BackendBase() override;

  /// End the attempt with a failure; secrets are wiped.
  login::BackendEvent fail(login::FailureType type, std::string reason,
                           std::string client_reply = {});
  /// End the attempt with a backend referral to `target` ([user@]host[:port]),
  /// which the engine follows (login::BackendDriver).
  login::BackendEvent redirected(std::string reason, std::string_view target);
  /// Create sasl_ for mech_ and clear password_; false for an unknown mech.
  /// authcid = master if set, else the user; authzid = the user for master
  /// logins (or always, with `authzid_always`), empty otherwise.
  /// `host_port`: OAUTHBEARER carries the backend's host and port (Dovecot
  /// 2.4 sends them for IMAP and POP3 only).
  bool start_sasl(bool authzid_always = false, bool host_port = true);

  enum class Answer { Sent, BadBase64, Unexpected };
  /// Answer the base64 `challenge` with sasl_: `before` + base64(response) +
  /// `after` is appended to output_. A challenge that was the server's
  /// failure report (OAuth JSON) is kept, as sent, in
  /// failure_.sasl_challenge for the frontend to relay.
  Answer answer_challenge(std::string_view challenge, std::string_view before,
                          std::string_view after);
  /// Append base64(`raw`) to output_ leaving no copy behind.
  void append_base64(std::string_view raw);
  /// Make room in output_ for a command carrying `secret_bytes`, so that
  /// writing it never reallocates (a reallocation would free an unwiped copy).
  void reserve_output(size_t secret_bytes);

  // Copied parameters.
  std::string user_;
  core::Secret password_;
  std::string master_;
  std::string mech_;
  std::string backend_host_;  // the passdb's host and port (OAUTHBEARER)
  uint16_t backend_port_;
  bool starttls_;
  bool not_trusted_;
  std::vector<std::pair<std::string, std::string>> forward_;
  const login::ClientInfo* client_;

  bool finished_ = false;
  std::unique_ptr<sasl::ClientMech> sasl_;
};

/// The base64 length of `raw_size` bytes.
constexpr size_t base64_size(size_t raw_size) { return (raw_size + 2) / 3 * 4; }
/// An address as XCLIENT wants it: IPv4-mapped IPv6 as plain IPv4.
std::string plain_ip(const asio::ip::address& a);
/// The TTL to send on: one hop less (never below 0).
unsigned next_ttl(const login::ClientInfo& c);
/// XCLIENT FORWARD=: base64 of the TAB-separated, tab-escaped `k=v` pairs.
std::string forward_base64(const std::vector<std::pair<std::string, std::string>>& forward);

}  // namespace portier::protocols::common
