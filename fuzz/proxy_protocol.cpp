// libFuzzer target: the PROXY protocol parser and serializer
// (net/proxy_protocol). Input: the first bytes of a connection.
// Invariants: parse() looks only at its input (ASan: a copy of exactly the
// input's bytes on the heap) and is deterministic; a header's length is
// within the input and the version's bound; NeedMore only below the bounds;
// the incremental Parser fed byte by byte and in two halves agrees with
// parse(); a parsed PROXY header serializes (v1 and v2) and parses back to
// the same addresses and TLS facts.
#include <cstring>
#include <memory>

#include "fuzz_common.hpp"
#include "net/proxy_protocol.hpp"

namespace pp = portier::net::proxy;

namespace {

void same(const pp::Result& a, const pp::Result& b, const char* what) {
  FUZZ_CHECK(a.status == b.status, what, a.error + " / " + b.error);
  if (a.status == pp::Status::Done) FUZZ_CHECK(a.length == b.length, what, "length");
  if (a.status == pp::Status::Error) FUZZ_CHECK(a.error == b.error, what, a.error);
}

asio::ip::tcp::endpoint unmapped(const asio::ip::tcp::endpoint& e) {
  const auto& a = e.address();
  if (a.is_v6() && a.to_v6().is_v4_mapped())
    return {asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6()), e.port()};
  return e;
}

void round_trip(const pp::Header& h) {
  if (h.local || !h.source || !h.destination) return;
  const auto v1 = pp::parse(pp::serialize_v1(*h.source, *h.destination));
  FUZZ_CHECK(v1.status == pp::Status::Done, "v1 round trip", v1.error);
  std::optional<pp::SslInfo> ssl;
  if (h.ssl) ssl = pp::SslInfo{h.ssl_version.substr(0, 64)};
  const std::string out = pp::serialize_v2(*h.source, *h.destination, ssl, h.authority);
  const auto v2 = pp::parse(out);
  FUZZ_CHECK(v2.status == pp::Status::Done, "v2 round trip", v2.error);
  FUZZ_CHECK(v2.length == out.size(), "v2 round trip length", "");
  FUZZ_CHECK(v2.header.ssl == h.ssl, "v2 round trip ssl", "");
  FUZZ_CHECK(v2.header.authority == h.authority, "v2 round trip authority", h.authority);
  // The addresses come back as they were; IPv4-mapped IPv6 goes out as IPv4,
  // and a mixed pair as IPv6 with the IPv4 one mapped.
  FUZZ_CHECK(unmapped(*v2.header.source) == unmapped(*h.source), "v2 round trip source", "");
  FUZZ_CHECK(unmapped(*v2.header.destination) == unmapped(*h.destination),
             "v2 round trip destination", "");
  FUZZ_CHECK(unmapped(*v1.header.source) == unmapped(*h.source), "v1 round trip source", "");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // An exact-size heap copy: reading one byte past the input is an ASan report.
  std::unique_ptr<char[]> copy(new char[size ? size : 1]);
  if (size) std::memcpy(copy.get(), data, size);
  const std::string_view in(copy.get(), size);

  const pp::Result r = pp::parse(in);
  same(r, pp::parse(in), "parse is deterministic");
  switch (r.status) {
    case pp::Status::Done:
      FUZZ_CHECK(r.length <= in.size(), "header longer than input", "");
      FUZZ_CHECK(r.length <= (r.version == 1 ? pp::kV1MaxLength : pp::kV2MaxLength),
                 "header over the bound", "");
      // The header alone gives the same verdict (nothing behind it mattered).
      same(r, pp::parse(in.substr(0, r.length)), "header alone");
      round_trip(r.header);
      break;
    case pp::Status::NeedMore:
      FUZZ_CHECK(in.size() < pp::kV2MaxLength, "NeedMore past the bound", "");
      if (r.version == 1) FUZZ_CHECK(in.size() < pp::kV1MaxLength, "v1 NeedMore past 107", "");
      break;
    case pp::Status::Error:
      FUZZ_CHECK(!r.error.empty(), "error without reason", "");
      break;
  }

  // Byte by byte.
  pp::Parser p;
  size_t fed = 0;
  while (fed < in.size() && p.result().status == pp::Status::NeedMore) p.feed(in.substr(fed++, 1));
  if (p.result().status == pp::Status::Done) FUZZ_CHECK(fed == p.result().length, "byte feed length", "");
  if (r.status != pp::Status::NeedMore) same(r, p.result(), "byte by byte");
  // Two halves.
  pp::Parser q;
  q.feed(in.substr(0, in.size() / 2));
  if (q.result().status == pp::Status::NeedMore) q.feed(in.substr(in.size() / 2));
  same(r, q.result(), "two halves");
  return 0;
}
