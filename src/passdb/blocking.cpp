#include "passdb/blocking.hpp"

#include <asio/co_spawn.hpp>

namespace portier::passdb {

SyncPassdb::~SyncPassdb() = default;

BlockingPassdb::BlockingPassdb(std::shared_ptr<SyncPassdb> driver, unsigned threads)
    : driver_(std::move(driver)), pool_(threads ? threads : 1) {}

BlockingPassdb::~BlockingPassdb() {
  pool_.stop();
  pool_.join();
}

std::optional<Lookup> BlockingPassdb::lookup_inline(const Request& req) { return driver_->lookup_inline(req); }

namespace {
// Runs on the adapter's pool. A plain coroutine function with by-value
// parameters (GCC 12 mis-handles lambda captures in coroutine frames).
net::Task<Lookup> run_blocking(std::shared_ptr<SyncPassdb> driver, RequestCopy req) {
  co_return driver->lookup_blocking(req.view());
}
}  // namespace

net::Task<Lookup> BlockingPassdb::lookup(const Request& req) {
  co_return co_await asio::co_spawn(pool_.get_executor(), run_blocking(driver_, RequestCopy(req)),
                                    asio::use_awaitable);
}

std::vector<std::string> BlockingPassdb::warnings() const { return driver_->warnings(); }

}  // namespace portier::passdb
