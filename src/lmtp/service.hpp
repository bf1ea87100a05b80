#pragma once
// The LMTP proxy: a sibling service of the login engine (login/sibling.hpp)
// for listeners with protocol = "lmtp". Per RCPT TO a passdb lookup without
// password (protocol "lmtp") routes the recipient; recipients are grouped by
// backend (one connection and one transaction per group, MAIL FROM
// replayed); DATA is streamed to every backend at once through a bounded
// buffer, and the per-recipient replies come back in RCPT order after the
// final dot. See docs/LMTP.md.
//
// Owns: the LMTP session (client leg, backend connections, routing,
// replies, log lines). May use: lmtp/smtp.hpp (sans-I/O parser), login
// (Snapshot, SessionRegistry, ClientInfo helpers), passdb (Chain, proxy
// fields), net, tls, log, config.
// Threading: each session lives on the worker that accepted it.

#include "login/sibling.hpp"

namespace portier::lmtp {

/// The service entry for app/registries (listener protocol "lmtp", port 24).
extern const login::SiblingService kService;

}  // namespace portier::lmtp
