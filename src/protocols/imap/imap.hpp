#pragma once
// The IMAP protocol plug-in: registry entry (name "imap", log prefix
// "imap-login", ports 143/993) and its Frontend factory.
//
// Pieces (all sans-I/O):
//   parser.hpp         incremental bounded command parser
//   quote.hpp          string quoting for the backend
//   frontend.hpp       pre-login server dialogue with the client
//   backend_login.hpp  proxy-client login to a backend
//   state.hpp          proxy state names (`id+login/banner`)

#include "login/protocol.hpp"

namespace portier::protocols::imap {

/// The plug-in; `&kProtocol` goes into protocols/registry.cpp.
extern const login::Protocol kProtocol;

}  // namespace portier::protocols::imap
