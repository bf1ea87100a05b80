// POP3 plug-in registry entry.

#include "protocols/pop3/pop3.hpp"

#include "protocols/pop3/frontend.hpp"

namespace portier::protocols::pop3 {

const login::Protocol kProtocol{
    .name = "pop3",
    .service = "pop3-login",
    .default_port = 110,
    .default_tls_port = 995,
    .make_frontend = &make_frontend,
};

}  // namespace portier::protocols::pop3
