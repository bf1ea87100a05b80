#pragma once
// Login referrals (RFC 2221 and its POP3/SMTP/ManageSieve equivalents in
// Dovecot): the target text every protocol puts in its referral reply, once.
//
// Owns: the encoding of a referral target. Uses: login/protocol.hpp (Referral).

#include <cstdint>
#include <string>
#include <string_view>

#include "login/protocol.hpp"

namespace portier::protocols::common {

/// `user` for a URL's userinfo: everything but unreserved characters and the
/// few RFC 5092 allows in an IMAP URL's user (`!$'()*+,&=~`) percent-encoded
/// (so `@`, `:`, `;`, `]`, `)` and spaces never break the reply).
std::string url_user(std::string_view user);

/// `[<user>[;AUTH=<mech>]@]<host>[:<port>]`: the host bracketed when it is an
/// IPv6 address, the port left out when it is `default_port`. With
/// `auth_mech` (IMAP URLs) the mechanism follows the user.
std::string referral_target(const login::Referral& r, uint16_t default_port, bool auth_mech = false);

/// A backend's referral target inside `text`: what follows `marker`, up to
/// the first of `stops` (or the end). Empty when `marker` is absent.
std::string_view referral_target_in(std::string_view text, std::string_view marker,
                                    std::string_view stops);

}  // namespace portier::protocols::common
