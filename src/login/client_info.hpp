#pragma once
// The ClientInfo of an accepted connection: addresses, trust, TTL, session id.
//
// Owns: nothing. Uses: config snapshot (trusted networks, TLS settings),
// tls::peer_info (SNI name, client-certificate user after a handshake).

#include <asio/ip/tcp.hpp>
#include <string>

#include "config/config.hpp"
#include "login/protocol.hpp"
#include "login/runtime.hpp"
#include "net/socket.hpp"

namespace portier::login {

/// Dovecot's session id: base64 of 48 bits of microsecond time, the 16-bit
/// client port and the client IP (16 characters for IPv4).
std::string make_session_id(const asio::ip::address& ip, uint16_t port);

/// Fill `ci` for the connection on `s`; false when its endpoints cannot be
/// read (the peer is already gone).
/// `eps` comes from the accept (peer) and the listener (local, unless it is
/// bound to a wildcard address: then one getsockname()).
bool init_client_info(ClientInfo& ci, asio::ip::tcp::socket& s, const net::Endpoints& eps,
                      const Snapshot& snap, config::TlsMode listener_tls);

/// After a client-side TLS handshake (implicit or STARTTLS): the SNI name
/// becomes local_name, a verified client certificate gives cert_valid and
/// cert_user ([tls] cert_username_field).
void note_tls_peer(ClientInfo& ci, SSL* ssl, const Snapshot& snap);

}  // namespace portier::login
