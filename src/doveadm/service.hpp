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

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <atomic>
#include <memory>
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
  /// The bound port (after bind()).
  uint16_t port() const { return port_; }

  struct Shared;  // the snapshot and session count, shared with the sessions

 private:
  std::shared_ptr<Shared> shared_;
  asio::io_context io_;
  asio::ip::tcp::acceptor acceptor_;
  std::thread thread_;
  uint16_t port_ = 0;
};

}  // namespace portier::doveadm
