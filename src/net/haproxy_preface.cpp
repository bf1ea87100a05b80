// The `haproxy` preface: a listener with `haproxy = true` expects a PROXY
// protocol v1 or v2 header first (docs/PROXY_PROTOCOL.md), from a trusted
// sender only, complete within `login.haproxy_timeout`.
//
// The header is read without ever taking a byte behind it: each round peeks
// at what is there (MSG_PEEK), lets the sans-I/O parser judge it, and then
// consumes either the whole header (Done) or everything peeked (NeedMore:
// all of it belongs to the header). So whatever the client sent behind the
// header — a pipelined command, a TLS ClientHello — stays in the socket for
// the session and OpenSSL. Consuming on NeedMore also means the next wait
// is for new bytes, so a header trickled in byte by byte cannot spin the
// worker; the deadline bounds it in time, kMaxLength in memory.

#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cerrno>

#include <asio/error.hpp>
#include <fmt/format.h>

#include "net/deadline.hpp"
#include "net/preface.hpp"
#include "net/readiness.hpp"
#include "net/proxy_protocol.hpp"

namespace portier::net {

namespace {

using asio::ip::tcp;
using Outcome = PrefaceResult::Outcome;

std::string ip_text(const asio::ip::address& a) {
  if (a.is_v6() && a.to_v6().is_v4_mapped())
    return asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6()).to_string();
  return a.to_string();
}

PrefaceResult refused(Outcome o, std::string text) {
  PrefaceResult r;
  r.outcome = o;
  r.log = std::move(text);
  return r;
}

// "haproxy(v2): Client disconnected: <why> (rip=<ip>)" — Dovecot's shape.
std::string disconnected(int version, std::string_view why, const std::string& rip) {
  const std::string v = version ? fmt::format("(v{})", version) : std::string();
  return fmt::format("haproxy{}: Client disconnected: {} (rip={})", v, why, rip);
}

class HaproxyPreface final : public Preface {
 public:
  explicit HaproxyPreface(PrefaceSettings s) : settings_(std::move(s)) {}

  Task<PrefaceResult> run(tcp::socket& s, const Endpoints& eps) const override {
    const std::string rip = ip_text(eps.remote.address());
    if (!settings_.trusted || !settings_.trusted(eps.remote.address()))
      co_return refused(Outcome::Refused, fmt::format("haproxy: Client not trusted (rip={})", rip));
    bool timed_out = false;
    Deadline deadline(s.get_executor());
    deadline.arm_after(settings_.timeout, [&] {
      timed_out = true;
      s.cancel();
    });
    std::array<char, proxy::kMaxLength> buf;
    size_t have = 0;
    int version = 0;
    const int fd = s.native_handle();
    // The sender writes the header as soon as it connects, so it is usually
    // there by the time the connection is accepted: peek first, wait only
    // when nothing is (2 system calls per header instead of 4).
    bool wait = false;
    for (;;) {
      if (wait) {
        auto [ec] = co_await async_wait_ready(s, tcp::socket::wait_read, use_nothrow);
        if (timed_out)
          co_return refused(Outcome::Refused, fmt::format("haproxy: Client timed out (rip={})", rip));
        if (ec == asio::error::operation_aborted) co_return refused(Outcome::Quiet, {});
        if (ec) co_return refused(Outcome::Refused, disconnected(version, ec.message(), rip));
      }
      wait = true;
      const ssize_t n = ::recv(fd, buf.data() + have, buf.size() - have, MSG_PEEK | MSG_DONTWAIT);
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        note_drained(s, tcp::socket::wait_read);  // the wait needs no EPOLL_CTL_MOD
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        const std::string why = asio::error_code(errno, asio::error::get_system_category()).message();
        co_return refused(Outcome::Refused, disconnected(version, why, rip));
      }
      if (n == 0)
        co_return refused(Outcome::Refused,
                          disconnected(version, have ? "Truncated header" : "Connection closed", rip));
      const proxy::Result r = proxy::parse(std::string_view(buf.data(), have + static_cast<size_t>(n)));
      version = r.version;
      if (r.status == proxy::Status::Error)
        co_return refused(Outcome::Refused, disconnected(version, r.error, rip));
      // Take the header's bytes (all peeked bytes while it is incomplete).
      const size_t take = r.status == proxy::Status::Done ? r.length - have : static_cast<size_t>(n);
      if (::recv(fd, buf.data() + have, take, MSG_DONTWAIT) != static_cast<ssize_t>(take))
        co_return refused(Outcome::Refused, disconnected(version, "Read failed", rip));
      have += take;
      if (r.status == proxy::Status::Done) co_return result(r.header, eps);
    }
  }

 private:
  static PrefaceResult result(const proxy::Header& h, const Endpoints& eps) {
    PrefaceResult out;
    // v2 LOCAL: the proxy's own connection (a health check, which may expect
    // the banner): served with the real endpoints, like Dovecot does.
    out.health_check = h.local && h.version == 2;
    out.endpoints = eps;
    if (h.source && h.destination) {
      out.endpoints.remote = *h.source;
      out.endpoints.local = *h.destination;
    }
    out.tls = h.ssl;
    out.local_name = h.authority;
    // A CN counts only for a certificate the hop reports as verified, and
    // only when it can be a user name (printable, no spaces).
    if (h.ssl_verified && !h.ssl_cn.empty() && h.ssl_cn.size() <= 255 &&
        std::all_of(h.ssl_cn.begin(), h.ssl_cn.end(),
                    [](char c) { return static_cast<unsigned char>(c) > 0x20 && c != 0x7f; }))
      out.cert_user = h.ssl_cn;
    return out;
  }

  PrefaceSettings settings_;
};

}  // namespace

std::unique_ptr<Preface> make_haproxy_preface(PrefaceSettings settings) {
  return std::make_unique<HaproxyPreface>(std::move(settings));
}

}  // namespace portier::net
