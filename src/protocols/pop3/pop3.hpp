#pragma once
// The POP3 protocol plug-in: registry entry (name "pop3", log prefix
// "pop3-login", ports 110/995) and its Frontend factory.
//
// Pieces (all sans-I/O):
//   text.hpp           reply-line helpers, XCLIENT value checks, tab escaping
//   frontend.hpp       pre-login server dialogue with the client (§4.3)
//   backend_login.hpp  proxy-client login to a backend (§4.1, §4.2)
//   state.hpp          proxy state names (`banner` ... `login2`)

#include "login/protocol.hpp"

namespace portier::protocols::pop3 {

/// The plug-in; `&kProtocol` goes into protocols/registry.cpp.
extern const login::Protocol kProtocol;

}  // namespace portier::protocols::pop3
