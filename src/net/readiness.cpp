#include "net/readiness.hpp"

#include <asio/detail/reactor.hpp>
#include <asio/version.hpp>

// The internals used here are Asio 1.22's (Debian 12). Another version must be
// checked by hand (epoll_reactor::start_op, descriptor_state) before this
// line is changed.
static_assert(ASIO_VERSION == 102201, "net/readiness.cpp relies on Asio 1.22 internals");
static_assert(std::is_same_v<asio::detail::reactor, asio::detail::epoll_reactor>,
              "net/readiness.cpp expects the epoll reactor");

namespace portier::net::readiness_detail {

namespace {
using Reactor = asio::detail::epoll_reactor;
using State = Reactor::descriptor_state;
using Flags = bool (State::*)[Reactor::max_ops];

// descriptor_state::try_speculative_ and basic_socket_acceptor::impl_ are
// private. An explicit instantiation may name a private member
// ([temp.spec.general]/6); these hand out pointers to them, once, here.
using AcceptorImplMember =
    asio::detail::io_object_impl<asio::detail::reactive_socket_service<asio::ip::tcp>,
                                 asio::any_io_executor> asio::ip::tcp::acceptor::*;
struct FlagsTag {
  friend Flags member(FlagsTag);
};
struct AcceptorTag {
  friend AcceptorImplMember member(AcceptorTag);
};
template <typename Tag, auto M>
struct Expose {
  friend decltype(M) member(Tag) { return M; }
};
template struct Expose<FlagsTag, &State::try_speculative_>;
template struct Expose<AcceptorTag, &asio::ip::tcp::acceptor::impl_>;

// basic_socket::impl_ is protected: a derived class may form a pointer to it.
struct SocketImpl : asio::ip::tcp::socket {
  static auto& of(asio::ip::tcp::socket& s) {
    return (s.*(&SocketImpl::impl_)).get_implementation();
  }
};
struct AcceptorImpl {
  static auto& of(asio::ip::tcp::acceptor& a) { return (a.*member(AcceptorTag{})).get_implementation(); }
};

template <typename Impl>
bool* flag_of(Impl& impl, int op) {
  State* st = impl.reactor_data_;
  if (!st) return nullptr;
  return &(st->*member(FlagsTag{}))[op];
}

template <typename Impl>
void start_on(asio::execution_context& ctx, Impl& impl, int op_type,
              asio::detail::reactor_op* op) {
  // allow_speculative with the flag clear: no perform() now, no MOD for a
  // read (a first write wait adds EPOLLOUT), the op is queued.
  asio::use_service<Reactor>(ctx).start_op(op_type, impl.socket_, impl.reactor_data_, op,
                                           /*is_continuation=*/false,
                                           /*allow_speculative=*/true);
}
}  // namespace

bool* flag(asio::ip::tcp::socket& s, int op) { return flag_of(SocketImpl::of(s), op); }
bool* flag(asio::ip::tcp::acceptor& a, int op) { return flag_of(AcceptorImpl::of(a), op); }

void start(asio::ip::tcp::socket& s, int op_type, asio::detail::reactor_op* op) {
  start_on(asio::query(s.get_executor(), asio::execution::context), SocketImpl::of(s), op_type, op);
}
void start(asio::ip::tcp::acceptor& a, int op_type, asio::detail::reactor_op* op) {
  start_on(asio::query(a.get_executor(), asio::execution::context), AcceptorImpl::of(a), op_type,
           op);
}

}  // namespace portier::net::readiness_detail
