// IMAP plug-in registry entry.

#include "protocols/imap/imap.hpp"

#include "protocols/imap/frontend.hpp"

namespace portier::protocols::imap {

const login::Protocol kProtocol{
    .name = "imap",
    .service = "imap-login",
    .default_port = 143,
    .default_tls_port = 993,
    .make_frontend = &make_frontend,
};

}  // namespace portier::protocols::imap
