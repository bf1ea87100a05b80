#pragma once
// Client side of the OAuth SASL mechanisms, used to pass a client's bearer
// token on to a backend (passdb `proxy_mech = %{mechanism}`, `pass =
// %{password}`; ops-reference §9.1-§9.3):
//   OAUTHBEARER (RFC 7628): `n,a=<user>,` ^A [`host=<h>` ^A `port=<p>` ^A]
//                           `auth=Bearer <token>` ^A ^A   (^A = 0x01)
//   XOAUTH2 (Google):       `user=<user>` ^A `auth=Bearer <token>` ^A ^A
// Both send their message as the initial response, or as the answer to the
// server's first empty challenge (when no initial response went out). Any
// other challenge is the server's failure report (base64 JSON):
// it is answered with `0x01` (OAUTHBEARER) or an empty response (XOAUTH2),
// and failure_reported() turns true; the server's final failure follows.
//
// Owns: the message (a core::Secret). Uses: sasl (ClientMech), core.

#include <memory>
#include <string>
#include <string_view>

#include "sasl/sasl.hpp"

namespace portier::sasl {

/// An OAUTHBEARER or XOAUTH2 client (case-insensitive `name`) for `user`
/// with `token`; nullptr for any other name. `params.host`/`params.port` go
/// into OAUTHBEARER's host/port pairs when set (XOAUTH2 has none).
std::unique_ptr<ClientMech> make_oauth_client(std::string_view name, std::string_view user,
                                              std::string_view token, const ClientParams& params);

/// True for "OAUTHBEARER" and "XOAUTH2" (case-insensitive).
bool is_oauth_client_mech(std::string_view name);

/// An RFC 5801 gs2 authzid: `,` -> `=2C`, `=` -> `=3D`.
std::string gs2_escape(std::string_view authzid);

}  // namespace portier::sasl
