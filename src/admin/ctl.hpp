#pragma once
// `portier ctl`: the command-line client of the admin socket. It speaks the
// same doveadm-shaped JSON API over HTTP on the unix socket and prints human
// tables (or the raw JSON with --json).
//
//   portier ctl [--socket PATH] [-c CONFIG] COMMAND
//     who|list [--json] [USER-MASK...] [--host HOST] [--ip CIDR]
//     kick USER-MASK...|--host HOST|--ip CIDR [--delay 10s]
//     reload | stats [--json] | cache-flush [USER...]
//
// Exit codes: 0 done, 1 the server answered with an error, 64 usage,
// 69 the socket cannot be reached, 78 reload refused (config errors), or
// the exitCode of the server's error reply.
//
// Owns: argument parsing, the blocking socket client, output formatting.
// Uses: nlohmann/json.

#include <functional>
#include <string>
#include <vector>

namespace portier::admin {

/// `args` are the words after "ctl". `socket_of_config` maps a config path
/// to its [admin] socket ("" with a message on stderr when it has none).
int ctl_main(const std::vector<std::string>& args,
             const std::function<std::string(const std::string&)>& socket_of_config);

/// Send one HTTP request over the unix socket at `path`; fills the status and
/// body. False (with `error`) when the socket cannot be used.
bool ctl_request(const std::string& path, const std::string& body, int& status, std::string& reply,
                 std::string& error);

}  // namespace portier::admin
