#pragma once
// The Submission protocol plug-in: registry entry (name "submission", log
// prefix "submission-login", ports 587/465) and its Frontend factory.
//
// Pieces (all sans-I/O):
//   smtp.hpp           reply-line parser, enhanced status codes, xtext
//   frontend.hpp       pre-login server dialogue with the client
//   backend_login.hpp  proxy-client login to a backend
//   state.hpp          proxy state names (`banner`, `ehlo`, ... `authenticate`)

#include "login/protocol.hpp"

namespace portier::protocols::submission {

/// The plug-in; `&kProtocol` goes into protocols/registry.cpp.
extern const login::Protocol kProtocol;

}  // namespace portier::protocols::submission
