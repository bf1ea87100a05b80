#pragma once
// The admin listener: control plane on its own thread and io_context, never
// on a worker. An HTTP/1.1 server (admin/http.hpp) on `[admin] listen`
// (API key required: `Authorization: X-Dovecot-API <base64(key)>` as
// Dovecot's doveadm HTTP API, or `Authorization: Bearer <key>`; compared in
// constant time; optional TLS) and on `[admin] socket` (a unix socket, mode
// 0600: the file's permission is the authentication; `portier ctl`).
// Routes: GET /metrics, POST /doveadm/v1 (admin/api.hpp).
// Bounds: request size, a deadline per request (also for idle keep-alive),
// a connection cap (over it: closed at once).
//
// Owns: the admin thread, its listeners and connections. Uses: admin::Api,
// tls (optional), log.

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/local/stream_protocol.hpp>
#include <memory>
#include <string>
#include <thread>

#include "admin/api.hpp"
#include "admin/http.hpp"
#include "config/config.hpp"
#include "core/result.hpp"
#include "core/secret.hpp"
#include "tls/context.hpp"

namespace portier::admin {

class AdminServer {
 public:
  AdminServer(const config::Admin& cfg, Engine engine, Hooks hooks);
  ~AdminServer();

  /// Bind the listener and the socket; logs `Listening on ... (admin)`.
  core::Result<void> bind();
  /// Start the admin thread.
  void start();
  /// Stop serving and join the thread (before the workers stop).
  void stop();

 private:
  template <typename Conn>
  net::Task<void> serve(Conn conn, std::string peer, bool need_key);
  net::Task<void> accept_tcp();
  net::Task<void> accept_unix();
  bool authorized(const Request& req) const;
  net::Task<std::string> handle(Request& req, bool need_key, const std::string& peer);

  config::Admin cfg_;
  core::Secret key_;
  tls::CtxPtr tls_;
  Api api_;
  asio::io_context io_;  // workers post replies to it: the default (locking) hint
  std::unique_ptr<asio::ip::tcp::acceptor> tcp_;
  std::unique_ptr<asio::local::stream_protocol::acceptor> unix_;
  std::thread thread_;
  unsigned connections_ = 0;  // admin thread only
};

}  // namespace portier::admin
