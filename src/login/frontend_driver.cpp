#include "login/frontend_driver.hpp"

#include <asio/error.hpp>

#include "login/client_info.hpp"
#include "login/prelogin_io.hpp"

namespace portier::login {

using net::Task;

namespace {
constexpr auto kGoodbyeWriteLimit = std::chrono::milliseconds(2000);
// While shutting down a goodbye gets less: shutdown must end within
// server.shutdown_timeout + 1 s even with clients that do not read.
constexpr auto kShutdownGoodbyeWriteLimit = std::chrono::milliseconds(300);
}  // namespace

void FrontendDriver::start(const Protocol& p, SSL_CTX* tls_ctx) {
  tls_ctx_ = tls_ctx;
  fe_ = p.make_frontend(snap_.frontend, ci_);
  fe_->start();
}

Task<bool> FrontendDriver::next_login() {
  for (;;) {
    FrontendEvent ev = fe_->next();
    if (!co_await flush()) {
      end("Connection closed");
      co_return false;
    }
    Next next = Next::Continue;
    switch (ev) {
      case FrontendEvent::NeedInput:
        next = co_await read();
        break;
      case FrontendEvent::StartTls:
        next = co_await start_tls();
        break;
      case FrontendEvent::Close:
        end(fe_->close_reason().empty() ? std::string_view("Logged out") : fe_->close_reason());
        co_return false;
      case FrontendEvent::Authenticate:
        co_return true;
    }
    if (next == Next::End) co_return false;
  }
}

Task<FrontendDriver::Next> FrontendDriver::read() {
  asio::error_code ec;
  // The client speaks after our reply: no read that finds nothing first.
  size_t n = co_await client_.read_some(read_buffer(), kReadChunk, ec, /*wait_first=*/true);
  if (ec) {
    // A named local, not a temporary in the co_await expression (GCC 12
    // destroys such temporaries twice).
    const std::string reason = ec == asio::error::eof ? "Connection closed" : ec.message();
    co_await cut_short(false, reason);
    co_return Next::End;
  }
  fe_->feed(std::string_view(read_buffer(), n));
  wipe_read_buffer(n);  // a LOGIN line carries a password
  co_return Next::Continue;
}

Task<FrontendDriver::Next> FrontendDriver::start_tls() {
  if (!tls_ctx_) {
    end("TLS not configured");
    co_return Next::End;
  }
  auto hs = co_await client_.handshake_server(tls_ctx_);
  Counters::tls_handshake(log_.counters(), TlsLeg::Client, hs.ok);
  if (!hs.ok) {
    end("TLS handshaking: " + log::sanitize(hs.error));
    co_return Next::End;
  }
  ci_.tls = true;
  ci_.end_client_tls = true;
  note_tls_peer(ci_, client_.ssl(), snap_);
  fe_->tls_started();
  co_return Next::Continue;
}

Task<void> FrontendDriver::refuse(const Protocol& p, bool implicit_tls, std::string_view text) {
  if (!implicit_tls) {
    fe_ = p.make_frontend(snap_.frontend, ci_);
    fe_->goodbye(text);
    co_await goodbye();
  }
  client_.close();
}

Task<bool> FrontendDriver::read_failure_answer() {
  while (fe_->failure_answer_pending()) {
    const FrontendEvent ev = fe_->next();
    if (!fe_->failure_answer_pending() || ev != FrontendEvent::NeedInput) break;
    if (!co_await flush()) {
      end("Connection closed");
      co_return false;
    }
    const Next next = co_await read();
    if (next == Next::End) co_return false;
  }
  co_return true;
}

Task<void> FrontendDriver::too_many_failures() {
  // A named local, not co_await in the condition (GCC 12 miscompiles that here).
  const bool answered = co_await read_failure_answer();
  if (!answered) co_return;
  co_await flush();
  fe_->goodbye("Too many authentication failures.");
  co_await goodbye();
  end("Too many authentication failures");
}

Task<void> FrontendDriver::close_after_failure() {
  // A named local, not co_await in the condition (GCC 12 miscompiles that here).
  const bool answered = co_await read_failure_answer();
  if (!answered) co_return;
  co_await goodbye();
  end("Authentication failed");
}

Task<void> FrontendDriver::cut_short(bool client_gone, std::string_view other_reason) {
  if (abort_.kicked) {
    if (!client_gone) {
      fe_->goodbye("Kicked by admin.");
      co_await goodbye();
    }
    end("Kicked by admin");
  } else if (abort_.stopped) {
    if (!client_gone) {
      fe_->goodbye("Server shutting down.");
      co_await goodbye();
    }
    end("Process shutting down");
  } else if (abort_.login_timed_out) {
    if (!client_gone) {
      fe_->timed_out();
      co_await goodbye();
    }
    end("Inactivity");
  } else {
    end(other_reason);
  }
}

void FrontendDriver::end(std::string_view reason) {
  client_.close();  // before the log line: a reacting client sees the slot free
  conn_.release();
  log_.emit(events::PreloginEnded{reason, stats_.summary(), ci_.health_check && stats_.attempts == 0});
}

// Write the frontend's queued output. False when the client is gone.
Task<bool> FrontendDriver::flush() {
  std::string& out = fe_->output();
  if (out.empty()) co_return true;
  auto ec = co_await client_.write_all(out);
  out.clear();
  co_return !ec;
}

// After a goodbye is queued: write it, bounded in time, then stop.
Task<void> FrontendDriver::goodbye() {
  timer_.arm(abort_.stopped ? kShutdownGoodbyeWriteLimit : kGoodbyeWriteLimit,
             [this] { client_.close(); });
  co_await flush();
  timer_.disarm();
}

}  // namespace portier::login
