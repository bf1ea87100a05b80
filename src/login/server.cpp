#include "login/server.hpp"

#include <sys/socket.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/error.hpp>
#include <asio/post.hpp>
#include <asio/ip/v6_only.hpp>
#include <asio/steady_timer.hpp>

#include "log/log.hpp"
#include "login/counters.hpp"
#include "net/awaitable.hpp"
#include "net/deadline.hpp"
#include "net/socket.hpp"

namespace portier::login {

namespace {
std::string_view tls_name(config::TlsMode m) {
  switch (m) {
    case config::TlsMode::None:
      return "none";
    case config::TlsMode::StartTls:
      return "starttls";
    case config::TlsMode::Implicit:
      return "implicit";
  }
  return "none";
}
}  // namespace

Server::Server(std::shared_ptr<const Snapshot> snapshot, std::vector<const Protocol*> protocols)
    : snapshot_(std::move(snapshot)), protocols_(std::move(protocols)) {
  unsigned n = snapshot_->cfg.server.workers;
  if (n == 0) n = std::max(1u, std::thread::hardware_concurrency());
  for (unsigned i = 0; i < n; ++i) workers_.push_back(std::make_unique<Worker>());
  auth_pool_ = std::make_unique<asio::thread_pool>(std::max(2u, n));
  for (size_t i = 0; i < snapshot_->cfg.listeners.size(); ++i)
    listeners_.push_back({protocols_[i], snapshot_->cfg.listeners[i].tls,
                          snapshot_->cfg.listeners[i].haproxy ? "haproxy" : "", {}});
  listener_names_.resize(listeners_.size());
}

Server::~Server() { shutdown(); }

std::shared_ptr<const Snapshot> Server::snapshot() const {
  std::lock_guard lock(snap_mutex_);
  return snapshot_;
}

void Server::reload(std::shared_ptr<const Snapshot> snapshot) {
  {
    std::lock_guard lock(snap_mutex_);
    snapshot_ = std::move(snapshot);
  }
  Counters::reloaded(true);
}

core::Result<void> Server::bind() {
  const auto& cfg = snapshot_->cfg;
  for (size_t li = 0; li < cfg.listeners.size(); ++li) {
    const auto& l = cfg.listeners[li];
    asio::error_code ec;
    auto addr = asio::ip::make_address(l.address, ec);
    if (ec) {
      return core::fail("listener " + l.address + ": invalid address");
    }
    uint16_t port = l.port;
    for (auto& w : workers_) {
      auto acc = std::make_unique<asio::ip::tcp::acceptor>(w->io);
      asio::ip::tcp::endpoint ep(addr, port);
      acc->open(ep.protocol(), ec);
      if (!ec) acc->set_option(asio::socket_base::reuse_address(true), ec);
      if (!ec) {
        // One acceptor per worker on the same address: the kernel balances.
        int one = 1;
        if (::setsockopt(acc->native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
          ec = asio::error_code(errno, asio::error::get_system_category());
      }
      if (!ec && addr.is_v6()) acc->set_option(asio::ip::v6_only(true), ec);
      if (!ec) acc->bind(ep, ec);
      if (!ec) acc->listen(asio::socket_base::max_listen_connections, ec);
      if (ec) {
        return core::fail("bind(" + l.address + ", " + std::to_string(port) + ") failed: " + ec.message());
      }
      // Port 0: the first worker's bind picks the port, the others share it.
      port = acc->local_endpoint().port();
      w->acceptors.push_back(std::move(acc));
    }
    // The metrics' listener label; its counters exist (at zero) from now on.
    listener_names_[li] = fmt::format("{}:{}", addr.is_v6() ? "[" + l.address + "]" : l.address, port);
    listeners_[li].name = listener_names_[li];
    Counters::local().slot(listeners_[li].protocol->service, listeners_[li].name);
    log::logf(log::Level::Info, "portier", "Listening on {}:{} ({}, tls={}{})",
              addr.is_v6() ? "[" + l.address + "]" : l.address, port, l.protocol,
              tls_name(l.tls), l.haproxy ? ", haproxy" : "");
  }
  return {};
}

void Server::accept_loop(Worker& w, asio::ip::tcp::acceptor& acc, size_t li) {
  asio::co_spawn(
      w.io,
      [this, &w, &acc, li]() -> net::Task<void> {
        // Non-blocking, TCP_NODELAY (inherited by accepted sockets) and the
        // local endpoint: once per listener, not per connection.
        net::Listener listener(acc);
        asio::steady_timer backoff(w.io);
        for (;;) {
          auto [ec, sock, eps] = co_await listener.accept();
          if (ec == asio::error::operation_aborted || w.registry.shutting_down) co_return;
          if (ec) {
            // EMFILE/ENFILE and friends: log, back off briefly, keep serving.
            log::logf(log::Level::Error, "portier", "accept() failed: {}", ec.message());
            backoff.expires_after(std::chrono::milliseconds(100));
            co_await backoff.async_wait(net::use_nothrow);
            continue;
          }
          // Peer from accept4, local from the listener unless it is a wildcard.
          start_session(std::move(sock), eps, snapshot(), listeners_[li], w.registry, *auth_pool_,
                        governor_);
        }
      },
      asio::detached);
}

void Server::start() {
  for (auto& w : workers_) {
    for (size_t li = 0; li < w->acceptors.size(); ++li) accept_loop(*w, *w->acceptors[li], li);
    Worker* wp = w.get();
    wp->thread = std::thread([wp] { wp->io.run(); });
  }
}

bool Server::heartbeat() {
  bool all = true;
  for (auto& w : workers_) {
    Worker* wp = w.get();
    all &= wp->beats.load() == wp->posted;
    ++wp->posted;
    asio::post(wp->io, [wp] { ++wp->beats; });
  }
  return all;
}

void Server::shutdown() {
  bool any = false;
  for (auto& w : workers_) any |= w->thread.joinable();
  if (!any) return;
  auto on_each = [this](auto fn) {
    for (auto& w : workers_) {
      if (!w->thread.joinable()) continue;
      Worker* wp = w.get();
      asio::post(wp->io, [wp, fn] { fn(*wp); });
    }
  };
  // 1. Stop accepting; end relays and idle pre-login sessions.
  on_each([](Worker& w) {
    asio::error_code ec;
    for (auto& a : w.acceptors) a->close(ec);
    // The worker's deadline timer stays armed between sessions; from now on
    // it goes when the last deadline does, so that run() can return.
    net::Wheel::of(w.io.get_executor()).drain();
    w.registry.stop_all(false);
  });
  // 2. Logins already talking to a backend may finish, up to the deadline.
  auto deadline = std::chrono::steady_clock::now() + snapshot()->cfg.server.shutdown_timeout;
  // (Polled: a worker with nothing left has already returned from run().)
  while (std::chrono::steady_clock::now() < deadline && governor_.backend_logins() > 0)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  // 3. Everything that is left ends now.
  on_each([](Worker& w) { w.registry.stop_all(true); });
  for (auto& w : workers_) {
    // Sessions end on their own after stop(); the io_context then runs out of work.
    if (w->thread.joinable()) w->thread.join();
  }
  if (auth_pool_) auth_pool_->join();
}

void SessionRegistry::stop_all(bool force) {
  shutting_down = true;
  // stop() only cancels; sessions remove themselves when their coroutine ends.
  for (Stoppable* s : sessions) s->stop(force);
  // A relay's stop() erases it from `relays` at once: iterate over a copy.
  std::vector<relay::Relay*> live;
  live.reserve(relays.size());
  for (auto& [key, r] : relays) live.push_back(r);
  for (relay::Relay* r : live) r->stop();
}

}  // namespace portier::login
