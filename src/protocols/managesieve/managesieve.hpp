#pragma once
// The ManageSieve (RFC 5804) protocol plug-in: registry entry (name
// "managesieve", log prefix "managesieve-login", port 4190, no implicit-TLS
// default port) and its Frontend factory.
//
// Pieces (all sans-I/O):
//   parser.hpp         bounded command / string / response parsing, quoting
//   frontend.hpp       pre-login server dialogue with the client
//   backend_login.hpp  proxy-client login to a backend
//   state.hpp          proxy state names (`none`, `tls-start`, ...)

#include "login/protocol.hpp"

namespace portier::protocols::managesieve {

/// The plug-in; `&kProtocol` goes into protocols/registry.cpp.
extern const login::Protocol kProtocol;

}  // namespace portier::protocols::managesieve
