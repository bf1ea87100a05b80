// Micro-benchmarks of the relay legs (Google Benchmark):
//   BM_RelayLeg/copy|splice   portier's relay::Relay between two loopback TCP
//                             connections (its own io_context thread), bytes
//                             written on the client side and read on the
//                             backend side; reports bytes/s
//   BM_BufferBorrow           borrow + return a pooled 16 KiB copy buffer
//   BM_PipeBorrow             borrow + return a pooled pipe
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <thread>
#include <vector>

#include "relay/pools.hpp"
#include "relay/relay.hpp"
#include "tls/stream.hpp"

using namespace portier;

namespace {

struct RelayRig {
  asio::io_context io;
  asio::ip::tcp::socket a_ext{io}, b_ext{io};
  std::thread th;

  explicit RelayRig(bool splice) {
    asio::ip::tcp::acceptor acc(io, {asio::ip::make_address("127.0.0.1"), 0});
    asio::ip::tcp::socket a_int(io), b_int(io);
    a_ext.connect(acc.local_endpoint());
    acc.accept(a_int);
    b_ext.connect(acc.local_endpoint());
    acc.accept(b_int);
    for (auto* s : {&a_ext, &b_ext}) ::fcntl(s->native_handle(), F_SETFL, O_NONBLOCK);
    relay::Options o;
    o.splice = splice;
    relay::Relay::start(tls::Stream(std::move(a_int)), tls::Stream(std::move(b_int)), o,
                        [](const relay::Result&) {});
    th = std::thread([this] { io.run(); });
  }
  ~RelayRig() {
    ::shutdown(a_ext.native_handle(), SHUT_RDWR);
    ::shutdown(b_ext.native_handle(), SHUT_RDWR);
    th.join();
  }

  // Push `total` bytes in on the client side and read them out on the backend side.
  bool transfer(size_t total) {
    static std::vector<char> out(256 * 1024, 'x'), in(256 * 1024);
    size_t sent = 0, got = 0;
    const int wfd = a_ext.native_handle(), rfd = b_ext.native_handle();
    while (got < total) {
      pollfd p[2] = {{rfd, POLLIN, 0}, {wfd, short(sent < total ? POLLOUT : 0), 0}};
      if (::poll(p, 2, 5000) <= 0) return false;
      if (p[1].revents & POLLOUT) {
        ssize_t n = ::send(wfd, out.data(), std::min(out.size(), total - sent), MSG_NOSIGNAL);
        if (n > 0) sent += size_t(n);
      }
      if (p[0].revents & POLLIN) {
        ssize_t n = ::recv(rfd, in.data(), in.size(), 0);
        if (n <= 0) return false;
        got += size_t(n);
      }
    }
    return true;
  }
};

void BM_RelayLeg(benchmark::State& st) {
  const bool splice = st.range(0) == 1;
  st.SetLabel(splice ? "splice" : "copy");
  const size_t chunk = 1 << 20;
  RelayRig rig(splice);
  if (!rig.transfer(chunk)) return st.SkipWithError("relay did not move bytes");
  for (auto _ : st)
    if (!rig.transfer(chunk)) return st.SkipWithError("relay stalled");
  st.SetBytesProcessed(int64_t(st.iterations()) * int64_t(chunk));
}

void BM_BufferBorrow(benchmark::State& st) {
  for (auto _ : st) {
    relay::Buffer b;
    benchmark::DoNotOptimize(b.data());
  }
}

void BM_PipeBorrow(benchmark::State& st) {
  for (auto _ : st) {
    relay::Pipe p;
    benchmark::DoNotOptimize(p.read_fd());
  }
}

}  // namespace

BENCHMARK(BM_RelayLeg)->Arg(0)->Arg(1)->UseRealTime();
BENCHMARK(BM_BufferBorrow);
BENCHMARK(BM_PipeBorrow);
BENCHMARK_MAIN();
