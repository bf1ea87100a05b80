#pragma once
// Workers and listeners. N worker threads, each with its own io_context and
// its own SO_REUSEPORT acceptor per listener: the kernel spreads connections,
// and a session stays on the worker that accepted it. Password checks run on
// a separate bounded thread pool.

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/thread_pool.hpp>
#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/result.hpp"
#include "login/runtime.hpp"
#include "login/session.hpp"

namespace portier::login {

class Server {
 public:
  /// `protocols[i]` is the plug-in for `snapshot->cfg.listeners[i]`.
  Server(std::shared_ptr<const Snapshot> snapshot, std::vector<const Protocol*> protocols);
  ~Server();

  /// Bind every listener on every worker; logs `Listening on ...`. False on error.
  core::Result<void> bind();
  /// Start worker threads (returns immediately).
  void start();
  /// New sessions use `snapshot`; running sessions keep theirs.
  void reload(std::shared_ptr<const Snapshot> snapshot);
  /// Stop accepting, end all sessions, join the workers.
  void shutdown();
  /// Client connections now (pre-login and relayed): the service status line.
  size_t connections() const { return governor_.connections(); }
  /// Service watchdog: true when every worker has run the previous heartbeat
  /// (its event loop is turning); then posts the next one to each worker.
  bool heartbeat();

 private:
  struct Worker {
    // Every socket and timer of a worker is used only on its thread (other
    // threads post to it), so the reactor's per-descriptor locks are off;
    // the scheduler keeps its lock for those posts.
    asio::io_context io{ASIO_CONCURRENCY_HINT_UNSAFE_IO};
    std::vector<std::unique_ptr<asio::ip::tcp::acceptor>> acceptors;
    SessionRegistry registry;
    std::thread thread;
    std::atomic<uint64_t> beats{0};  // heartbeats run by this worker
    uint64_t posted = 0;              // heartbeats posted (main thread only)
  };

  std::shared_ptr<const Snapshot> snapshot() const;
  void accept_loop(Worker& w, asio::ip::tcp::acceptor& acc, size_t listener_index);

  // Declared first: outlives the workers, whose leftover handlers may still
  // hold Governor leases when their io_contexts are destroyed.
  Governor governor_;
  mutable std::mutex snap_mutex_;
  std::shared_ptr<const Snapshot> snapshot_;
  std::vector<const Protocol*> protocols_;
  std::vector<ListenerInfo> listeners_;
  std::vector<std::string> listener_names_;  // ListenerInfo::name points here (set by bind())
  std::vector<std::unique_ptr<Worker>> workers_;
  std::unique_ptr<asio::thread_pool> auth_pool_;
};

}  // namespace portier::login
