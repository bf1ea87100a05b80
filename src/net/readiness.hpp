#pragma once
// Readiness waits without an epoll_ctl per wait.
//
// Asio 1.22's socket.async_wait() always re-registers the descriptor
// (EPOLL_CTL_MOD): it cannot know whether the socket is already readable, so
// it makes the kernel re-check. portier reads and writes with its own system
// calls (recv, send, splice, SSL_read) and sometimes knows a socket drained:
// a read that got EAGAIN, a send that got EAGAIN or took fewer bytes than
// given, or a descriptor just registered (EPOLL_CTL_ADD reports the readiness
// it finds as an event). After that, with edge-triggered epoll, every new
// byte, FIN or free buffer space raises a new event — a wait can just be
// queued, as Asio does for its own operations. A short read is no proof: a
// FIN that came with the data raised no event of its own.
//
// The knowledge lives where Asio keeps it, in the descriptor's
// `try_speculative_` flags: Asio clears them when one of its own operations
// drains the socket and sets them on every event. note_drained() clears one;
// a wait then queues quietly while it is still clear (no event since the
// drain), and falls back to async_wait() otherwise. So a forgotten
// note_drained() costs the old EPOLL_CTL_MOD, never a lost wake-up; a wrong
// one would lose a wake-up — only the cases above may call it.
//
// Owns: nothing. May use: Asio internals of version 1.22 (Debian 12), checked
// at compile time in readiness.cpp. Threading: the socket's own thread only.

#include <asio/async_result.hpp>
#include <asio/detail/reactive_wait_op.hpp>
#include <asio/ip/tcp.hpp>
#include <memory>

namespace portier::net {

namespace readiness_detail {
/// The descriptor's try-speculative flag for `op` (0 read, 1 write), or null
/// (closed socket).
bool* flag(asio::ip::tcp::socket& s, int op);
bool* flag(asio::ip::tcp::acceptor& a, int op);
/// Queue `op` on the reactor with no speculative attempt and no MOD (a write
/// wait adds EPOLLOUT once per socket).
void start(asio::ip::tcp::socket& s, int op_type, asio::detail::reactor_op* op);
void start(asio::ip::tcp::acceptor& a, int op_type, asio::detail::reactor_op* op);
}  // namespace readiness_detail

/// The socket was just drained in direction `w` (recv/splice got EAGAIN;
/// send got EAGAIN or took fewer bytes than given).
template <typename Sock>
void note_drained(Sock& s, typename Sock::wait_type w) {
  if (bool* f = readiness_detail::flag(s, w == Sock::wait_write ? 1 : 0)) *f = false;
}

/// A fresh descriptor (just registered with EPOLL_CTL_ADD, which reports any
/// readiness it already has as an event): no wait on it needs a MOD.
template <typename Sock>
void note_registered(Sock& s) {
  note_drained(s, Sock::wait_read);
  note_drained(s, Sock::wait_write);
}

/// socket.async_wait(w, token), minus the EPOLL_CTL_MOD when the socket is
/// known drained in that direction since its last event.
template <typename Sock, typename Token>
auto async_wait_ready(Sock& s, typename Sock::wait_type w, Token&& token) {
  return asio::async_initiate<Token, void(asio::error_code)>(
      [&s, w](auto handler) {
        int op_type = w == Sock::wait_write ? 1 : 0;
        bool* f = readiness_detail::flag(s, op_type);
        if (!f || *f) {
          s.async_wait(w, std::move(handler));
          return;
        }
        using H = std::decay_t<decltype(handler)>;
        using Op = asio::detail::reactive_wait_op<H, typename Sock::executor_type>;
        typename Op::ptr p = {std::addressof(handler), Op::ptr::allocate(handler), nullptr};
        p.p = new (p.v) Op(asio::error_code(), handler, s.get_executor());
        readiness_detail::start(s, op_type, p.p);
        p.v = p.p = nullptr;
      },
      token);
}

}  // namespace portier::net
