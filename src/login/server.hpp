#pragma once
// Workers and listeners. N worker threads, each with its own io_context and
// its own SO_REUSEPORT acceptor per listener: the kernel spreads connections,
// and a session stays on the worker that accepted it. Password checks run on
// a separate bounded thread pool. The admin API (src/admin/) lists and kicks
// sessions by posting to each worker (list(), kick()): each worker matches
// its own SessionRegistry on its own thread.

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/local/stream_protocol.hpp>
#include <asio/steady_timer.hpp>
#include <asio/thread_pool.hpp>
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "core/result.hpp"
#include "login/runtime.hpp"
#include "login/session.hpp"
#include "login/sibling.hpp"

namespace portier::login {

class Server {
 public:
  /// `protocols[i]` is the plug-in for `snapshot->cfg.listeners[i]`; when
  /// `siblings[i]` is set instead (a non-login service such as LMTP, see
  /// login/sibling.hpp), that listener's connections go to it.
  Server(std::shared_ptr<const Snapshot> snapshot, std::vector<const Protocol*> protocols,
         std::vector<const SiblingService*> siblings = {});
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

  // ---- admin API (any thread; the work runs on each worker's own thread) ----
  /// Every live session's row. `done` runs once, on the last worker's thread.
  void list(std::function<void(std::vector<SessionRow>)> done);
  /// Kick the sessions `match` selects, on every worker; with a `delay` the
  /// disconnects of each worker are spread evenly over it (100 ms steps). A
  /// session that ended meanwhile is skipped. `done(matched)` runs once, on
  /// a worker thread, when every worker has matched (not when all are closed).
  void kick(std::function<bool(const SessionRow&)> match, std::chrono::milliseconds delay,
            std::function<void(size_t)> done);

 private:
  struct Worker {
    // Every socket and timer of a worker is used only on its thread (other
    // threads post to it), so the reactor's per-descriptor locks are off;
    // the scheduler keeps its lock for those posts.
    asio::io_context io{ASIO_CONCURRENCY_HINT_UNSAFE_IO};
    std::vector<std::unique_ptr<asio::ip::tcp::acceptor>> acceptors;  // null for a unix listener
    /// Unix-socket listeners (`path`), on the first worker only: listener index, acceptor.
    std::vector<std::pair<size_t, std::unique_ptr<asio::local::stream_protocol::acceptor>>> unix_acceptors;
    SessionRegistry registry;
    std::thread thread;
    std::unordered_set<asio::steady_timer*> kick_timers;  // delayed kicks (cancelled at shutdown)
    std::atomic<uint64_t> beats{0};  // heartbeats run by this worker
    uint64_t posted = 0;              // heartbeats posted (main thread only)
  };

  std::shared_ptr<const Snapshot> snapshot() const;
  void accept_loop(Worker& w, asio::ip::tcp::acceptor& acc, size_t listener_index);
  void unix_accept_loop(Worker& w, asio::local::stream_protocol::acceptor& acc, size_t listener_index);
  /// Kick `ids` of worker `w` in 100 ms steps spread over `delay` (worker thread).
  void kick_later(Worker& w, std::vector<uint64_t> ids, std::chrono::milliseconds delay);

  // Declared first: outlives the workers, whose leftover handlers may still
  // hold Governor leases when their io_contexts are destroyed.
  Governor governor_;
  mutable std::mutex snap_mutex_;
  std::shared_ptr<const Snapshot> snapshot_;
  std::vector<const Protocol*> protocols_;
  std::vector<const SiblingService*> siblings_;  // per listener; null = login
  std::vector<ListenerInfo> listeners_;
  std::vector<std::string> listener_names_;  // ListenerInfo::name points here (set by bind())
  std::vector<std::unique_ptr<Worker>> workers_;
  std::unique_ptr<asio::thread_pool> auth_pool_;
};

}  // namespace portier::login
