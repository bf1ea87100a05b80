#pragma once
// The ClientInfo of an accepted connection: addresses, trust, TTL, session id.
//
// Owns: nothing. Uses: config snapshot (trusted networks, TLS settings).

#include <asio/ip/tcp.hpp>
#include <string>

#include "config/config.hpp"
#include "login/protocol.hpp"
#include "login/runtime.hpp"

namespace portier::login {

/// Dovecot's session id: base64 of 48 bits of microsecond time, the 16-bit
/// client port and the client IP (16 characters for IPv4).
std::string make_session_id(const asio::ip::address& ip, uint16_t port);

/// Fill `ci` for the connection on `s`; false when its endpoints cannot be
/// read (the peer is already gone).
bool init_client_info(ClientInfo& ci, const asio::ip::tcp::socket& s, const Snapshot& snap,
                      config::TlsMode listener_tls);

}  // namespace portier::login
