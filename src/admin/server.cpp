#include "admin/server.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/steady_timer.hpp>
#include <asio/write.hpp>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "admin/http.hpp"
#include "core/base64.hpp"
#include "core/secure.hpp"
#include "log/log.hpp"
#include "net/awaitable.hpp"
#include "tls/stream.hpp"

namespace portier::admin {

using log::Level;
using net::Task;

namespace {

constexpr size_t kReadChunk = 4096;

/// A TCP connection, with TLS when the listener has a certificate.
struct TcpConn {
  tls::Stream s;
  SSL_CTX* ctx = nullptr;
  Task<bool> start() {
    if (!ctx) co_return true;
    auto hs = co_await s.handshake_server(ctx);
    co_return hs.ok;
  }
  Task<size_t> read(char* buf, size_t len, asio::error_code& ec) {
    return s.read_some(buf, len, ec, /*wait_first=*/true);
  }
  Task<asio::error_code> write(std::string_view data) { return s.write_all(data); }
  void cancel() { s.cancel(); }
  void close() { s.close(); }
};

/// A unix-socket connection (portier ctl).
struct UnixConn {
  asio::local::stream_protocol::socket s;
  Task<bool> start() { co_return true; }
  Task<size_t> read(char* buf, size_t len, asio::error_code& ec) {
    auto [e, n] = co_await s.async_read_some(asio::buffer(buf, len), net::use_nothrow);
    ec = e;
    co_return n;
  }
  Task<asio::error_code> write(std::string_view data) {
    auto [e, n] = co_await asio::async_write(s, asio::buffer(data), net::use_nothrow);
    co_return e;
  }
  void cancel() {
    asio::error_code ec;
    s.cancel(ec);
  }
  void close() {
    asio::error_code ec;
    s.close(ec);
  }
};

/// SHA-256, for comparing keys in constant time whatever their lengths.
std::array<unsigned char, 32> digest(std::string_view s) {
  std::array<unsigned char, 32> out{};
  unsigned int n = 0;
  EVP_Digest(s.data(), s.size(), out.data(), &n, EVP_sha256(), nullptr);
  return out;
}

bool same_secret(std::string_view a, std::string_view b) {
  auto da = digest(a), db = digest(b);
  return CRYPTO_memcmp(da.data(), db.data(), da.size()) == 0;
}

bool starts_with_ci(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(s[i])) != std::tolower(static_cast<unsigned char>(prefix[i])))
      return false;
  return true;
}

std::string text(std::string_view s) { return std::string(s) + "\n"; }

}  // namespace

AdminServer::AdminServer(const config::Admin& cfg, Engine engine, Hooks hooks)
    : cfg_(cfg), api_(std::move(engine), std::move(hooks)) {
  key_ = cfg_.api_key;
  core::secure_zero(cfg_.api_key);
}

AdminServer::~AdminServer() { stop(); }

core::Result<void> AdminServer::bind() {
  if (!cfg_.cert.empty()) {
    auto ctx = tls::make_server_context(cfg_.cert, cfg_.key);
    if (!ctx) return core::fail("admin: " + ctx.error().message);
    tls_ = std::move(*ctx);
  }
  asio::error_code ec;
  if (!cfg_.listen.empty()) {
    auto addr = asio::ip::make_address(cfg_.listen_address, ec);
    if (ec) return core::fail("admin.listen: invalid address " + cfg_.listen_address);
    asio::ip::tcp::endpoint ep(addr, cfg_.listen_port);
    tcp_ = std::make_unique<asio::ip::tcp::acceptor>(io_);
    tcp_->open(ep.protocol(), ec);
    if (!ec) tcp_->set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) tcp_->bind(ep, ec);
    if (!ec) tcp_->listen(64, ec);
    if (ec) return core::fail("admin: bind(" + cfg_.listen + ") failed: " + ec.message());
    const auto port = tcp_->local_endpoint().port();
    log::logf(Level::Info, "portier", "Listening on {}:{} (admin{})",
              addr.is_v6() ? "[" + cfg_.listen_address + "]" : cfg_.listen_address, port,
              tls_ ? ", tls" : "");
  }
  if (!cfg_.socket.empty()) {
    // A stale socket from an earlier run would make bind() fail.
    struct stat st{};
    if (::lstat(cfg_.socket.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) ::unlink(cfg_.socket.c_str());
    unix_ = std::make_unique<asio::local::stream_protocol::acceptor>(io_);
    asio::local::stream_protocol::endpoint ep(cfg_.socket);
    unix_->open(ep.protocol(), ec);
    // Created 0600 (no window with wider permissions): before the workers
    // start, so the process-wide umask change affects no other file.
    const mode_t old = ::umask(0177);
    if (!ec) unix_->bind(ep, ec);
    ::umask(old);
    if (!ec && ::chmod(cfg_.socket.c_str(), 0600) != 0)
      ec = asio::error_code(errno, asio::error::get_system_category());
    if (!ec) unix_->listen(16, ec);
    if (ec) return core::fail("admin: socket " + cfg_.socket + ": " + ec.message());
    log::logf(Level::Info, "portier", "Listening on {} (admin socket)", cfg_.socket);
  }
  return {};
}

void AdminServer::start() {
  if (!tcp_ && !unix_) return;
  if (tcp_) asio::co_spawn(io_, accept_tcp(), asio::detached);
  if (unix_) asio::co_spawn(io_, accept_unix(), asio::detached);
  thread_ = std::thread([this] { io_.run(); });
}

void AdminServer::stop() {
  if (!thread_.joinable()) return;
  io_.stop();
  thread_.join();
  if (unix_) ::unlink(cfg_.socket.c_str());
}

Task<void> AdminServer::accept_tcp() {
  for (;;) {
    auto [ec, sock] = co_await tcp_->async_accept(net::use_nothrow);
    if (ec == asio::error::operation_aborted) co_return;
    if (ec) continue;
    asio::error_code pec;
    auto ep = sock.remote_endpoint(pec);
    std::string peer = pec ? "?" : ep.address().to_string();
    if (connections_ >= cfg_.max_connections) {
      log::logf(Level::Warning, "portier", "admin: connection from {} refused: {} connections open",
                peer, connections_);
      sock.close(pec);
      continue;
    }
    sock.non_blocking(true, pec);
    asio::co_spawn(io_, serve(TcpConn{tls::Stream(std::move(sock)), tls_.get()}, peer, true),
                   asio::detached);
  }
}

Task<void> AdminServer::accept_unix() {
  for (;;) {
    auto [ec, sock] = co_await unix_->async_accept(net::use_nothrow);
    if (ec == asio::error::operation_aborted) co_return;
    if (ec) continue;
    if (connections_ >= cfg_.max_connections) {
      log::logf(Level::Warning, "portier", "admin: socket connection refused: {} connections open",
                connections_);
      asio::error_code cec;
      sock.close(cec);
      continue;
    }
    asio::co_spawn(io_, serve(UnixConn{std::move(sock)}, "socket", false), asio::detached);
  }
}

template <typename Conn>
Task<void> AdminServer::serve(Conn conn, std::string peer, bool need_key) {
  ++connections_;
  struct Count {
    unsigned& n;
    ~Count() { --n; }
  } count{connections_};
  // One deadline per request (reading it, answering it) and for an idle
  // keep-alive connection: then the connection is cancelled and closed.
  asio::steady_timer deadline(io_);
  bool expired = false;
  auto arm = [&] {
    deadline.expires_after(cfg_.timeout);
    deadline.async_wait([&conn, &expired](const asio::error_code& ec) {
      if (ec) return;  // re-armed or the connection ended
      expired = true;
      conn.cancel();
    });
  };
  arm();
  if (!co_await conn.start()) {
    conn.close();
    co_return;
  }
  RequestParser parser(cfg_.max_request_size);
  std::string pending;
  std::vector<char> chunk(kReadChunk);
  for (;;) {
    while (parser.state() == RequestParser::State::NeedMore) {
      if (pending.empty()) {
        asio::error_code ec;
        size_t n = co_await conn.read(chunk.data(), chunk.size(), ec);
        if (ec) {
          if (expired) log::logf(Level::Info, "portier", "admin({}): request timed out", peer);
          conn.close();
          co_return;
        }
        pending.append(chunk.data(), n);
      }
      size_t used = parser.feed(pending);
      pending.erase(0, used);
    }
    if (parser.state() == RequestParser::State::Error) {
      log::logf(Level::Warning, "portier", "admin({}): bad request ({}): {}", peer,
                parser.error_status(), log::sanitize(parser.error_text()));
      const std::string reply =
          response(parser.error_status(), "text/plain", text(parser.error_text()), false);
      co_await conn.write(reply);
      conn.close();
      co_return;
    }
    Request req = parser.take();
    parser.reset();
    std::string reply = co_await handle(req, need_key, peer);
    auto ec = co_await conn.write(reply);
    if (ec || !req.keep_alive) break;
    arm();
  }
  conn.close();
}

bool AdminServer::authorized(const Request& req) const {
  const std::string* h = req.header("authorization");
  if (!h) return false;
  std::string_view v = *h;
  if (starts_with_ci(v, "X-Dovecot-API ")) {
    v.remove_prefix(14);
    auto decoded = core::base64_decode(v);
    if (!decoded) return false;
    core::Secret given = core::Secret::take(*decoded);
    return same_secret(given.view(), key_.view());
  }
  if (starts_with_ci(v, "Bearer ")) {
    v.remove_prefix(7);
    return same_secret(v, key_.view());
  }
  return false;
}

Task<std::string> AdminServer::handle(Request& req, bool need_key, const std::string& peer) {
  const bool keep = req.keep_alive;
  if (need_key && !authorized(req)) {
    log::logf(Level::Warning, "portier", "admin({}): {} {}: missing or wrong API key", peer,
              log::sanitize(req.method), log::sanitize(std::string(req.path())));
    co_return response(401, "text/plain", text("unauthorized"), keep,
                       "WWW-Authenticate: X-Dovecot-API\r\n");
  }
  // The header may carry the key: gone before anything else happens.
  for (auto& [k, v] : req.headers)
    if (k == "authorization") core::secure_zero(v);
  const std::string_view path = req.path();
  if (path == "/metrics") {
    if (req.method != "GET") co_return response(405, "text/plain", text("use GET"), keep, "Allow: GET\r\n");
    co_return response(200, "text/plain; version=0.0.4; charset=utf-8", api_.metrics(), keep);
  }
  if (path == "/doveadm/v1") {
    if (req.method != "POST")
      co_return response(405, "text/plain", text("use POST"), keep, "Allow: POST\r\n");
    auto body = nlohmann::json::parse(req.body, nullptr, /*allow_exceptions=*/false);
    if (body.is_discarded()) {
      log::logf(Level::Warning, "portier", "admin({}): invalid JSON", peer);
      co_return response(400, "application/json", R"({"error":"invalid JSON"})", keep);
    }
    int status = 200;
    auto out = co_await api_.run(body, status);
    for (const auto& c : body)
      if (c.is_array() && !c.empty() && c[0].is_string())
        log::logf(Level::Info, "portier", "admin({}): {}", peer, log::sanitize(c[0].get<std::string>()));
    co_return response(status, "application/json",
                       out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), keep);
  }
  co_return response(404, "text/plain", text("not found"), keep);
}

}  // namespace portier::admin
