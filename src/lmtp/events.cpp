#include "lmtp/events.hpp"

#include "log/log.hpp"

namespace portier::lmtp::events {

namespace {
constexpr std::string_view kLog = "lmtp";
using login::DeliveryReason;
}  // namespace

login::DeliveryResult result_of(int code) {
  if (code / 100 == 2) return login::DeliveryResult::Delivered;
  if (code / 100 == 4) return login::DeliveryResult::TempFail;
  return login::DeliveryResult::PermFail;
}

void EventSink::emit(const Event& ev) const {
  auto& c = login::Counters::local();
  std::visit(
      [&](const auto& e) {
        using T = std::decay_t<decltype(e)>;
        if constexpr (std::is_same_v<T, Connected>) {
          c.lmtp_session(true);
          log::logf(log::Level::Info, kLog, "{}: Connect from {}", sid_, e.rip);
        } else if constexpr (std::is_same_v<T, Disconnected>) {
          c.lmtp_session(false);
          log::logf(log::Level::Info, kLog, "{}: Disconnect from {}: {}", sid_, e.rip, e.reason);
        } else if constexpr (std::is_same_v<T, RcptRefused>) {
          c.lmtp_recipient(result_of(e.code), e.why);
          if (e.detail.empty()) return;
          const bool quiet = e.why == DeliveryReason::UnknownUser || e.why == DeliveryReason::NotProxied ||
                             e.why == DeliveryReason::Disabled;
          const auto lvl = quiet ? log::Level::Info : log::Level::Error;
          if (e.dest.empty()) log::logf(lvl, kLog, "{}: RCPT <{}>: {}", sid_, e.addr, e.detail);
          else log::logf(lvl, kLog, "{}: RCPT <{}> at {}: {}", sid_, e.addr, e.dest, e.detail);
        } else if constexpr (std::is_same_v<T, BackendOpened>) {
          c.lmtp_backend_connection(e.ok);
        } else if constexpr (std::is_same_v<T, RcptDone>) {
          const auto res = result_of(e.code);
          c.lmtp_recipient(res, e.why);
          log::logf(log::Level::Info, kLog, "{}: {} message to <{}> at {}: {} ({}/{} at {} ms)", sid_,
                    res == login::DeliveryResult::Delivered ? "Sent" : "Failed to send", e.addr, e.dest,
                    e.backend_reply, e.index, e.total, e.ms);
        } else if constexpr (std::is_same_v<T, MessageDone>) {
          c.lmtp_message(e.bytes, e.took);
          log::logf(log::Level::Debug, kLog, "{}: Message of {} bytes for {} recipient(s) in {} ms", sid_, e.bytes,
                    e.recipients, e.took.count() / 1000);
        }
      },
      ev);
}

}  // namespace portier::lmtp::events
