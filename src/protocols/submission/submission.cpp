// Submission plug-in registry entry.

#include "protocols/submission/submission.hpp"

#include "protocols/submission/frontend.hpp"

namespace portier::protocols::submission {

const login::Protocol kProtocol{
    .name = "submission",
    .service = "submission-login",
    .default_port = 587,
    .default_tls_port = 465,
    .make_frontend = &make_frontend,
};

}  // namespace portier::protocols::submission
