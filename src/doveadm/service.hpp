#pragma once
// The doveadm proxy: a listener speaking Dovecot's doveadm TCP protocol
// (protocol.hpp). A client (the `doveadm` CLI with `-S host:port`, or any
// doveadm protocol client) authenticates with [doveadm] password; for each
// per-user command portier looks the user up in the passdb chain (protocol
// "doveadm", lookup_only), connects to the user's backend doveadm server
// (`host`/`hostip` + the passdb `port` or [doveadm] port), authenticates with
// [doveadm] backend_password, sends the command and streams the reply back
// unchanged (bounded buffer, backpressure), exit code included. Failures of
// portier's own (unknown user, backend down, timeouts) are answered as a
// doveadm server answers them ("-NOUSER" = exit code 67, "-TEMPFAIL" = 75).
// See docs/DOVEADM.md.
//
// Owns: its listener, one thread with its own io_context (control plane: a
// slow backend or passdb never touches a login worker), the doveadm sessions.
// May use: doveadm/protocol, login/runtime (the Snapshot: config + passdbs),
// passdb (Chain, proxy fields), net, log, core.

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <atomic>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <mutex>
#include <thread>

#include "core/result.hpp"
#include "login/runtime.hpp"

namespace portier::doveadm {

class Service {
 public:
  explicit Service(std::shared_ptr<const login::Snapshot> snapshot);
  ~Service();
  Service(const Service&) = delete;
  Service& operator=(const Service&) = delete;

  /// True when the config has a [doveadm] listen address.
  static bool configured(const config::Config& cfg) { return !cfg.doveadm.listen_address.empty(); }
  /// Binds [doveadm] listen; logs `Listening on <ip>:<port> (doveadm)`.
  core::Result<void> bind();
  /// Starts the thread (returns at once).
  void start();
  /// New doveadm sessions use `snapshot` (passwords, passdbs, backend port);
  /// the listen address is bound once.
  void reload(std::shared_ptr<const login::Snapshot> snapshot);
  /// Stops accepting, ends the sessions, joins the thread.
  void shutdown();
  /// One doveadm HTTP API command, e.g. ["mailboxList", {"user": "user1"}, "tag"]
  /// (for the admin listener's POST /doveadm/v1): routed as a TCP command is
  /// (the passdb, protocol "doveadm") and forwarded to the user's backend's
  /// doveadm HTTP API (`host` + [doveadm] http_port, X-Dovecot-API with
  /// backend_api_key). `done` gets the backend's response element unchanged
  /// (["doveadmResponse", [...], "tag"] or ["error", {...}, "tag"]) or
  /// portier's own ["error", {"type": "exitCode", "exitCode": N, "message":
  /// "..."}, "tag"] (67 unknown user, 64 no user, 75 backend trouble); it
  /// runs on the doveadm thread. Thread-safe; needs start() (bind() not
  /// required). The backend's response is read whole, up to 16 MiB.
  void http_command(nlohmann::json cmd, std::function<void(nlohmann::json)> done);
  /// The bound port (after bind()).
  uint16_t port() const { return port_; }

  struct Shared;  // the snapshot and session count, shared with the sessions

 private:
  void start_accepting();
  std::shared_ptr<Shared> shared_;
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  asio::ip::tcp::acceptor acceptor_;
  std::thread thread_;
  uint16_t port_ = 0;
};

}  // namespace portier::doveadm
