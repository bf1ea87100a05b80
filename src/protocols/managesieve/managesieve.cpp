// ManageSieve plug-in registry entry.

#include "protocols/managesieve/managesieve.hpp"

#include "protocols/managesieve/frontend.hpp"

namespace portier::protocols::managesieve {

// default_tls_port 0: ManageSieve has no implicit-TLS port (§12, §13.2), so a
// passdb `ssl=yes` entry must name its `port` explicitly.
const login::Protocol kProtocol{
    .name = "managesieve",
    .service = "managesieve-login",
    .default_port = 4190,
    .default_tls_port = 0,
    .make_frontend = &make_frontend,
};

}  // namespace portier::protocols::managesieve
