// net::Listener / net::connect / net::adopt (sockets without Asio's extra
// system calls) and the relay's copy-then-splice path, on loopback sockets.

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/read.hpp>
#include <asio/write.hpp>
#include <chrono>
#include <future>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "net/deadline.hpp"
#include "net/socket.hpp"
#include "relay/relay.hpp"
#include "tls/stream.hpp"

using namespace portier;
using asio::ip::tcp;

namespace {

int int_opt(int fd, int level, int name) {
  int v = 0;
  socklen_t len = sizeof v;
  EXPECT_EQ(::getsockopt(fd, level, name, &v, &len), 0);
  return v;
}

struct Accepted {
  asio::error_code ec;
  tcp::socket sock;
  net::Endpoints eps;
};

// Accept one connection through net::Listener on `io` (run to completion).
Accepted accept_one(asio::io_context& io, tcp::acceptor& acc, const tcp::endpoint& connect_to,
                    tcp::socket& peer) {
  net::Listener l(acc);
  std::optional<Accepted> out;
  asio::co_spawn(
      io,
      [&]() -> net::Task<void> {
        auto [ec, s, eps] = co_await l.accept();
        out.emplace(Accepted{ec, std::move(s), eps});
      },
      asio::detached);
  peer.connect(connect_to);
  io.run();
  io.restart();
  return std::move(*out);
}

}  // namespace

TEST(NetListener, AcceptGivesEndpointsAndANonBlockingNoDelaySocket) {
  asio::io_context io;
  tcp::acceptor acc(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  tcp::socket peer(io);
  auto a = accept_one(io, acc, acc.local_endpoint(), peer);
  ASSERT_FALSE(a.ec) << a.ec.message();
  ASSERT_TRUE(a.sock.is_open());
  EXPECT_EQ(a.eps.remote, peer.local_endpoint());
  ASSERT_TRUE(a.eps.local.has_value());
  EXPECT_EQ(*a.eps.local, a.sock.local_endpoint());
  int fd = a.sock.native_handle();
  EXPECT_TRUE(::fcntl(fd, F_GETFL) & O_NONBLOCK);
  EXPECT_TRUE(::fcntl(fd, F_GETFD) & FD_CLOEXEC);
  // Inherited from the listener (Linux): no setsockopt per connection.
  EXPECT_EQ(int_opt(fd, IPPROTO_TCP, TCP_NODELAY), 1);
  // Asio knows: no ioctl(FIONBIO) from Stream or async_connect.
  EXPECT_TRUE(a.sock.non_blocking());
  asio::error_code ec;
  EXPECT_EQ(net::local_endpoint(a.sock, a.eps, ec), a.sock.local_endpoint());
}

TEST(NetListener, WildcardListenerLeavesTheLocalEndpointToGetsockname) {
  asio::io_context io;
  tcp::acceptor acc(io, tcp::endpoint(tcp::v4(), 0));
  tcp::socket peer(io);
  auto a = accept_one(io, acc, tcp::endpoint(asio::ip::make_address("127.0.0.1"),
                                             acc.local_endpoint().port()), peer);
  ASSERT_FALSE(a.ec) << a.ec.message();
  EXPECT_FALSE(a.eps.local.has_value());
  asio::error_code ec;
  auto lep = net::local_endpoint(a.sock, a.eps, ec);
  EXPECT_FALSE(ec);
  EXPECT_EQ(lep.address().to_string(), "127.0.0.1");
  EXPECT_EQ(lep, peer.remote_endpoint());
}

TEST(NetListener, ClosingTheAcceptorEndsTheWait) {
  asio::io_context io;
  tcp::acceptor acc(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  net::Listener l(acc);
  asio::error_code got;
  asio::co_spawn(
      io,
      [&]() -> net::Task<void> {
        auto [ec, s, eps] = co_await l.accept();
        got = ec;
      },
      asio::detached);
  asio::post(io, [&] { acc.close(); });
  io.run();
  EXPECT_EQ(got, asio::error::operation_aborted);
}

TEST(NetConnect, ConnectsAndReportsRefusal) {
  asio::io_context io;
  tcp::acceptor acc(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  auto ep = acc.local_endpoint();
  asio::error_code ok_ec = asio::error::would_block, refused_ec;
  asio::co_spawn(
      io,
      [&]() -> net::Task<void> {
        asio::error_code ec;
        auto s = net::open_socket(io.get_executor(), tcp::v4(), ec);
        EXPECT_FALSE(ec);
        EXPECT_TRUE(s.non_blocking());
        ok_ec = co_await net::connect(s, ep);
        EXPECT_EQ(s.remote_endpoint(), ep);
        acc.close();
        auto s2 = net::open_socket(io.get_executor(), tcp::v4(), ec);
        refused_ec = co_await net::connect(s2, ep);
      },
      asio::detached);
  io.run();
  EXPECT_FALSE(ok_ec) << ok_ec.message();
  EXPECT_EQ(refused_ec, asio::error::connection_refused);
}

// ---- relay -----------------------------------------------------------------

namespace {

// Two loopback TCP pairs: test client <-> relay <-> test backend. The relay
// runs on its own io_context thread; the test talks blocking sockets.
struct RelayRig {
  asio::io_context io;       // the relay's worker
  asio::io_context peer_io;  // the test's blocking sockets
  tcp::socket client{peer_io}, backend{peer_io};
  std::promise<relay::Result> done;
  relay::Stats stats;
  std::thread worker;

  static std::pair<tcp::socket, tcp::socket> pair(asio::io_context& a_io, asio::io_context& b_io) {
    tcp::acceptor acc(b_io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    tcp::socket a(a_io);
    a.connect(acc.local_endpoint());
    tcp::socket b = acc.accept();
    return {std::move(a), std::move(b)};
  }

  explicit RelayRig(bool splice = true, int small_buffers = 0) {
    auto [c, rc] = pair(peer_io, io);
    auto [rb, b] = pair(io, peer_io);
    if (small_buffers) {
      // The relay's writes to the client block early (tiny send buffer on
      // its side, tiny receive buffer on the client's).
      ::setsockopt(rc.native_handle(), SOL_SOCKET, SO_SNDBUF, &small_buffers, sizeof small_buffers);
      ::setsockopt(c.native_handle(), SOL_SOCKET, SO_RCVBUF, &small_buffers, sizeof small_buffers);
    }
    client = std::move(c);
    backend = std::move(b);
    relay::Options opts;
    opts.splice = splice;
    opts.linger = std::chrono::milliseconds(2000);
    asio::post(io, [this, rc = std::move(rc), rb = std::move(rb), opts]() mutable {
      relay::Relay::start(tls::Stream(std::move(rc)), tls::Stream(std::move(rb)), opts,
                          [this](const relay::Result& r) {
                            stats = relay::thread_stats();
                            // Let io.run() return: the linger deadline's timer.
                            net::Wheel::of(io.get_executor()).drain();
                            done.set_value(r);
                          });
    });
    worker = std::thread([this] { io.run(); });
  }
  ~RelayRig() {
    if (worker.joinable()) worker.join();
  }

  static std::string read_exactly(tcp::socket& s, size_t n) {
    std::string out(n, '\0');
    asio::read(s, asio::buffer(out));
    return out;
  }
  relay::Result finish() {
    client.shutdown(tcp::socket::shutdown_send);
    backend.shutdown(tcp::socket::shutdown_send);
    auto f = done.get_future();
    EXPECT_EQ(f.wait_for(std::chrono::seconds(10)), std::future_status::ready);
    worker.join();
    return f.get();
  }
};

}  // namespace

TEST(Relay, SmallMessagesAreCopiedNotSpliced) {
  RelayRig rig;
  for (int i = 0; i < 20; ++i) {
    std::string cmd = "a" + std::to_string(i) + " NOOP\r\n";
    asio::write(rig.client, asio::buffer(cmd));
    EXPECT_EQ(RelayRig::read_exactly(rig.backend, cmd.size()), cmd);
    std::string rep = "a" + std::to_string(i) + " OK NOOP completed.\r\n";
    asio::write(rig.backend, asio::buffer(rep));
    EXPECT_EQ(RelayRig::read_exactly(rig.client, rep.size()), rep);
  }
  auto r = rig.finish();
  EXPECT_EQ(rig.stats.splice_switches, 0u);
  EXPECT_GE(rig.stats.copy_reads, 40u);
  EXPECT_TRUE(r.error.empty()) << r.error;
}

TEST(Relay, ABulkTransferSwitchesToSpliceAndKeepsTheBytesInOrder) {
  RelayRig rig;
  // Small, then 4 MiB, then small again: one stream, in order, nothing lost.
  std::string big(4 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('A' + (i * 7 + i / 4096) % 26);
  std::string msg = "* 1 FETCH (BODY[] {" + std::to_string(big.size()) + "}\r\n" + big + ")\r\nb OK\r\n";
  asio::write(rig.backend, asio::buffer("* OK hello\r\n", 12));
  EXPECT_EQ(RelayRig::read_exactly(rig.client, 12), "* OK hello\r\n");
  std::thread writer([&] { asio::write(rig.backend, asio::buffer(msg)); });
  std::string got = RelayRig::read_exactly(rig.client, msg.size());
  writer.join();
  EXPECT_TRUE(got == msg);
  asio::write(rig.backend, asio::buffer("c OK\r\n", 6));
  EXPECT_EQ(RelayRig::read_exactly(rig.client, 6), "c OK\r\n");
  auto r = rig.finish();
  EXPECT_EQ(rig.stats.splice_switches, 1u);  // backend -> client only
  EXPECT_EQ(r.out, 12 + msg.size() + 6);
}

// The read that fills the buffer switches the direction to splice while the
// write of that buffer may block: the buffered bytes must go out before any
// spliced ones (Relay::transfer). Small socket buffers and a late reader
// make blocked writes likely; this test does not force the exact
// interleaving (the first full buffer usually goes out at once).
TEST(Relay, BulkTransferThroughSmallSocketBuffersKeepsTheOrder) {
  RelayRig rig(/*splice=*/true, /*small_buffers=*/16384);
  std::string big(1 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + (i * 13 + i / 1000) % 26);
  std::thread writer([&] { asio::write(rig.backend, asio::buffer(big)); });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the client reads late
  std::string got = RelayRig::read_exactly(rig.client, big.size());
  writer.join();
  EXPECT_TRUE(got == big);
  rig.finish();
  EXPECT_EQ(rig.stats.splice_switches, 1u);
}

TEST(Relay, WithoutSpliceABulkTransferKeepsCopying) {
  RelayRig rig(/*splice=*/false);
  std::string big(1 << 20, 'x');
  std::thread writer([&] { asio::write(rig.client, asio::buffer(big)); });
  EXPECT_TRUE(RelayRig::read_exactly(rig.backend, big.size()) == big);
  writer.join();
  rig.finish();
  EXPECT_EQ(rig.stats.splice_switches, 0u);
}

// No EAGAIN probe after a short read: bytes that arrive after the relay
// drained the socket, in bursts and with pauses, must all get through.
TEST(Relay, BytesArrivingAfterAShortReadAreNotLost) {
  RelayRig rig;
  std::string sent;
  for (int i = 0; i < 200; ++i) {
    std::string part = std::to_string(i) + ",";
    asio::write(rig.client, asio::buffer(part));
    sent += part;
    if (i % 50 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(RelayRig::read_exactly(rig.backend, sent.size()), sent);
  auto r = rig.finish();
  EXPECT_EQ(r.in, sent.size());
}
