#pragma once
// Sans-I/O SASL mechanisms (RFC 4616 PLAIN, draft-murchison-sasl-login LOGIN,
// RFC 4422 appendix A EXTERNAL: the identity of a verified TLS client certificate;
// RFC 7628 OAUTHBEARER and XOAUTH2 in sasl/oauth.hpp).
// No I/O and no base64: every function takes and returns raw decoded bytes;
// the protocol layer (through sasl::ServerExchange) does the base64 framing.
//
// Owns: the mechanisms' state; every password they hold is a core::Secret.
// Uses: core (strings, Secret).

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/secret.hpp"

namespace portier::sasl {

/// What a server mechanism learned from the client. Move-only: the password
/// is a core::Secret (wiped when cleared, replaced or destroyed; a move leaves
/// no copy behind).
struct Credentials {
  std::string mech;       ///< canonical upper-case mechanism name, e.g. "PLAIN"
  std::string authzid;    ///< authorization identity; empty when not given
  std::string authcid;    ///< authentication identity (the login user)
  core::Secret password;  ///< never log it
};

/// Outcome of one server step.
enum class Status { Continue, Done, Failed };

/// Result of a server step.
struct Step {
  Status status = Status::Failed;
  std::string challenge;  ///< raw bytes to send to the client when Continue
  std::string error;      ///< reason for logs when Failed; never contains secrets
};

/// Server side of one authentication exchange. Not reusable: create a new
/// instance per AUTHENTICATE command.
class ServerMech {
 public:
  virtual ~ServerMech();
  /// Begins the exchange. `initial_response` is std::nullopt when the client
  /// sent no initial response; an empty view means an empty initial response
  /// (the protocol's "=").
  virtual Step start(std::optional<std::string_view> initial_response) = 0;
  /// Feeds the client's (decoded) response to the previous challenge.
  /// Calling step() after Done or Failed returns Failed.
  virtual Step step(std::string_view response) = 0;
  /// Credentials collected; complete only after a step returned Done.
  virtual const Credentials& credentials() const = 0;
  /// The credentials moved out (after Done); the mechanism keeps no copy.
  virtual Credentials take_credentials() = 0;
};

/// What a server mechanism may know about the connection.
struct ServerParams {
  /// The identity the connection already proved (the user name of a verified
  /// TLS client certificate); "" = none. EXTERNAL needs one.
  std::string_view external_id;
};

/// Creates a server mechanism: "PLAIN", "LOGIN", "EXTERNAL", "OAUTHBEARER"
/// or "XOAUTH2" (sasl/oauth.hpp) (case-insensitive); nullptr for anything else.
std::unique_ptr<ServerMech> make_server_mech(std::string_view name, const ServerParams& params = {});

/// Mechanisms that authenticate with ServerParams::external_id (EXTERNAL):
/// offered only when there is one.
bool needs_external_id(std::string_view name);

/// Client side of one authentication exchange (used to log in to backends).
class ClientMech {
 public:
  virtual ~ClientMech();
  /// Initial response to send with the AUTHENTICATE command (may be empty;
  /// for LOGIN it is always empty, meaning "send no initial response").
  virtual std::string initial_response() = 0;
  /// Answers a server challenge; std::nullopt means protocol error (e.g. the
  /// server sent more challenges than the mechanism has answers for).
  virtual std::optional<std::string> step(std::string_view challenge) = 0;
  /// True once the last challenge answered was the server's failure report
  /// (the OAuth mechanisms' JSON): the answer only acknowledged it, and the
  /// server's final failure reply follows.
  virtual bool failure_reported() const { return false; }
};

/// What a client mechanism may know about the backend connection.
struct ClientParams {
  /// OAUTHBEARER's `host`/`port` pairs: where the proxy connects ("" / 0 = not sent).
  std::string_view host;
  uint16_t port = 0;
};

/// Creates a client mechanism: "PLAIN", "LOGIN", "OAUTHBEARER" or "XOAUTH2"
/// (case-insensitive; the OAuth ones take the token as `password`, see
/// sasl/oauth_client.hpp); nullptr for anything else. For master logins pass authzid = destination
/// user and authcid = master user; for normal logins authzid is empty.
/// LOGIN cannot carry an authzid: it is ignored for LOGIN.
/// The mechanism holds the password (and the PLAIN message) as core::Secret.
std::unique_ptr<ClientMech> make_client_mech(std::string_view name, std::string_view authzid,
                                             std::string_view authcid, std::string_view password,
                                             const ClientParams& params = {});

/// True for mechanisms this module implements ("PLAIN", "LOGIN";
/// case-insensitive).
bool is_known_mech(std::string_view name);
/// True for mechanisms portier can log in to a backend with (proxy_mech):
/// "PLAIN", "LOGIN", "OAUTHBEARER", "XOAUTH2".
bool is_client_mech(std::string_view name);
/// The implemented mechanisms' names, in registry order (config messages).
std::vector<std::string_view> known_mech_names();

}  // namespace portier::sasl
