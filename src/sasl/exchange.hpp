#pragma once
// The server side of one SASL exchange, once for every protocol: mechanism
// offered?, cleartext policy, the initial response ("=" = empty where the
// protocol says so), base64 in both directions, "*" to abort, continuation,
// wiping of every decoded secret. Sans-I/O. Protocols keep only their framing
// (IMAP/POP3 "+ ", SMTP "334 ", ManageSieve a quoted string) and reply texts.
//
// Owns: the ServerMech of the exchange in progress. Uses: sasl mechanisms,
// core base64/secure.

#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "sasl/sasl.hpp"

namespace portier::sasl {

/// What the protocol should answer after begin() / respond().
enum class Outcome {
  Challenge,        ///< send challenge() (base64) with the protocol's continuation framing
  Done,             ///< take_credentials(): the client authenticated itself
  Failed,           ///< the mechanism rejected the client's data: "authentication failed"
  Unsupported,      ///< mechanism not offered (configured) or unknown
  CleartextDenied,  ///< a cleartext mechanism on a connection that may not use one
  BadInitialBase64, ///< the initial response is not base64
  BadBase64,        ///< a continued response is not base64
  Aborted,          ///< the client answered "*"
};

/// How the protocol writes an empty initial response.
enum class IrSyntax {
  EqualsIsEmpty,  ///< IMAP SASL-IR, POP3, SMTP: "=" is an empty initial response
  Base64Only,     ///< ManageSieve: the string is plain base64 ("" is empty)
};

struct ExchangePolicy {
  std::span<const std::string> mechanisms;  ///< offered, upper case
  bool cleartext_allowed = false;
  /// The connection's verified identity (TLS client certificate user) for
  /// EXTERNAL; "" = EXTERNAL is not available.
  std::string_view external_id;
};

/// PLAIN and LOGIN send the password in the clear; OAUTHBEARER and XOAUTH2 a
/// bearer token (a password equivalent).
bool is_cleartext_mech(std::string_view mech);
/// `mech` (any case) is in `offered`.
bool mech_offered(std::span<const std::string> offered, std::string_view mech);

class ServerExchange {
 public:
  /// Start an exchange for `mech`; `ir` is the initial response as the client
  /// wrote it (std::nullopt: none). The exchange is active() after Challenge.
  Outcome begin(std::string_view mech, std::optional<std::string_view> ir,
                const ExchangePolicy& policy, IrSyntax syntax = IrSyntax::EqualsIsEmpty);
  /// The client's answer to the last challenge, as written (base64 or "*").
  Outcome respond(std::string_view text);

  /// An exchange waits for the client's next response.
  bool active() const { return mech_ != nullptr; }
  /// The last challenge, base64-encoded (valid after Outcome::Challenge).
  const std::string& challenge() const { return challenge_; }
  /// After Outcome::Done: the credentials (moved out; the exchange is idle).
  Credentials take_credentials() { return std::move(creds_); }
  /// Canonical upper-case name of the mechanism of the last begin().
  const std::string& mech_name() const { return name_; }
  /// Forget the exchange in progress (connection closing, protocol reset).
  void reset();

 private:
  Outcome result(const Step& step);

  std::unique_ptr<ServerMech> mech_;
  std::string name_;
  std::string challenge_;
  Credentials creds_;
};

}  // namespace portier::sasl
