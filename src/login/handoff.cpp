#include "login/handoff.hpp"

#include <memory>

#include "core/secure.hpp"

namespace portier::login {

std::string client_first_bytes(const std::string& reply, std::string& leftover) {
  std::string out;
  out.reserve(reply.size() + leftover.size());
  out += reply;
  out += leftover;
  leftover.clear();
  return out;
}

namespace {
// What outlives the session: the counts and the log context of the last line.
struct Ending {
  Governor::Lease conn;
  Governor::Lease user;
  LogContext log;
};

void finish(Ending& e, const relay::Result& r) {
  // Release the counts before logging: whoever reacts to the log line (or to
  // the closed socket) may reconnect at once.
  e.conn.release();
  e.user.release();
  SessionLog::emit_relay_end(e.log, r);
}
}  // namespace

net::Task<void> Handoff::run(const Abort& abort) {
  auto ec = co_await client.write_all(to_client);
  if (!ec && !to_backend.empty()) ec = co_await backend.write_all(to_backend);
  core::secure_zero(to_client);
  core::secure_zero(to_backend);
  started.took =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - proxy_start);
  session_log.emit(started);
  auto ending = std::make_shared<Ending>(
      Ending{std::move(conn), std::move(user), session_log.context()});
  if (ec || abort.stopped) {
    backend.close();
    client.close();
    relay::Result r;
    r.side = ec ? relay::EndSide::Client : relay::EndSide::Proxy;
    if (abort.kicked) {
      // Kicked while the first bytes were written (the write was cancelled).
      r.side = relay::EndSide::Proxy;
      r.reason = "Kicked by admin";
    } else if (ec) {
      r.error = ec.message();
    }
    finish(*ending, r);
    co_return;
  }
  // Shutdown finds live relays through the registry (keyed by `ending`).
  auto* rl = relay::Relay::start(std::move(client), std::move(backend), options,
                                 [ending, reg = &registry](const relay::Result& r) {
                                   reg->relays.erase(ending.get());
                                   finish(*ending, r);
                                 });
  row.state = "relaying";
  registry.relays.emplace(ending.get(), LiveRelay{rl, std::move(row)});
}

}  // namespace portier::login
