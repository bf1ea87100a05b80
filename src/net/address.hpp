#pragma once
// IP addresses as text, without the libc round trip (inet_ntop formats IPv4
// through sprintf: ~1 700 instructions a call, seven calls per login before
// this file existed).
//
// Owns: nothing (pure functions). May use: Asio's address types, std.

#include <asio/ip/address.hpp>
#include <string>

namespace portier::net {

/// Exactly asio::ip::address::to_string() (an IPv4-mapped IPv6 address stays
/// "::ffff:a.b.c.d"), with a fast path for IPv4.
std::string to_text(const asio::ip::address& a);

/// The address as a client sees it: an IPv4-mapped IPv6 address (a dual-stack
/// listener's IPv4 peer) as plain IPv4. What logs, ID/XCLIENT values and
/// per-IP keys use.
std::string plain_text(const asio::ip::address& a);

/// Append the dotted-quad form of `v4` to `out`.
void append_v4(std::string& out, const asio::ip::address_v4& v4);

}  // namespace portier::net
