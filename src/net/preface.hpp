#pragma once
// The connection preface: what runs on an accepted connection after accept
// and before the session speaks (issue 9). A listener names its prefaces
// (today only `haproxy`: the PROXY protocol header, net/haproxy_preface.cpp);
// each may replace the connection's endpoints, say that a hop in front
// terminated TLS, learn the TLS SNI name, or refuse the connection before any
// banner. Adding one = a file here + one line in the registry (preface.cpp).
//
// Owns: the preface registry. May use: net (socket, Deadline), asio.
// Threading: a preface runs on the worker that accepted the connection.

#include <asio/ip/tcp.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "net/awaitable.hpp"
#include "net/socket.hpp"

namespace portier::net {

/// What a preface needs from the configuration (taken from the snapshot of
/// the connection being accepted).
struct PrefaceSettings {
  /// Whether the connection's TCP peer may send a preface at all.
  std::function<bool(const asio::ip::address&)> trusted;
  /// The whole preface must arrive within this time.
  std::chrono::milliseconds timeout{3000};
};

struct PrefaceResult {
  enum class Outcome {
    Proceed,  ///< go on with the session, using what the preface learned
    Refused,  ///< close without a banner; `log` says why (one line)
    Quiet,    ///< close without a banner and without a warning (shutdown)
  };
  Outcome outcome = Outcome::Proceed;
  std::string log;  ///< Refused: Dovecot-like text, e.g. "haproxy: Client not trusted (rip=…)"
  Endpoints endpoints;  ///< Proceed: the client's endpoints (the header's, or the real ones)
  bool tls = false;     ///< a hop in front terminated TLS for the client
  std::string local_name;  ///< the TLS SNI name the client asked for ("" = unknown)
  /// The hop in front verified a client certificate with this CN (PROXY v2
  /// SSL TLV: certificate flag, verify = 0, SSL_CN): the SASL EXTERNAL user.
  std::string cert_user;
  /// The sender's own connection (PROXY v2 LOCAL: a load balancer's health
  /// check), served with the real endpoints.
  bool health_check = false;
  /// Bytes read behind the preface, for the session's pre-login input.
  /// The haproxy preface never reads past its header (it peeks first), so
  /// this is empty for it: a TLS ClientHello behind the header stays in the
  /// socket for OpenSSL.
  std::string leftover;
};

class Preface {
 public:
  virtual ~Preface() = default;
  /// Run on `s`, whose accepted endpoints are `eps` (local filled in).
  /// Cancelling the socket (shutdown) ends it with Quiet.
  virtual Task<PrefaceResult> run(asio::ip::tcp::socket& s, const Endpoints& eps) const = 0;
};

/// The registry: the preface called `name` with `settings`, or null when no
/// such preface exists. Names: "haproxy".
std::unique_ptr<Preface> make_preface(std::string_view name, PrefaceSettings settings);

/// The PROXY protocol v1/v2 receiver (net/haproxy_preface.cpp).
std::unique_ptr<Preface> make_haproxy_preface(PrefaceSettings settings);

}  // namespace portier::net
