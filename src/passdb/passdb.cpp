#include "passdb/passdb.hpp"

namespace portier::passdb {

Passdb::~Passdb() = default;
std::vector<std::string> Passdb::warnings() const { return {}; }

RequestCopy::RequestCopy(const Request& r)
    : user_(r.user),
      protocol_(r.protocol),
      service_(r.service),
      mechanism_(r.mechanism),
      remote_ip_(r.remote_ip),
      local_ip_(r.local_ip),
      session_id_(r.session_id),
      local_name_(r.local_name),
      tls_protocol_(r.tls_protocol),
      tls_cipher_(r.tls_cipher),
      redirect_host_next_(r.redirect_host_next),
      redirect_host_attempts_(r.redirect_host_attempts),
      password_(r.password),
      flags_(r) {
  flags_.user = flags_.password = flags_.protocol = flags_.service = flags_.mechanism = {};
  flags_.remote_ip = flags_.local_ip = flags_.session_id = flags_.local_name = {};
  flags_.tls_protocol = flags_.tls_cipher = {};
  flags_.redirect_host_next = flags_.redirect_host_attempts = {};
}

Request lookup_only_request(std::string_view user, std::string_view protocol, std::chrono::milliseconds timeout) {
  Request r;
  r.user = user;
  r.protocol = protocol;
  r.service = protocol;
  r.lookup_only = true;
  if (timeout.count() > 0) r.deadline = std::chrono::steady_clock::now() + timeout;
  return r;
}

Request RequestCopy::view() const {
  Request r = flags_;
  r.user = user_;
  r.password = password_.view();
  r.protocol = protocol_;
  r.service = service_;
  r.mechanism = mechanism_;
  r.remote_ip = remote_ip_;
  r.local_ip = local_ip_;
  r.session_id = session_id_;
  r.local_name = local_name_;
  r.tls_protocol = tls_protocol_;
  r.tls_cipher = tls_cipher_;
  r.redirect_host_next = redirect_host_next_;
  r.redirect_host_attempts = redirect_host_attempts_;
  return r;
}

void apply_verify(Lookup& l, VerifyResult v, std::string_view who) {
  switch (v) {
    case VerifyResult::Match: l.result = Result::Ok; break;
    case VerifyResult::Mismatch: l.result = Result::Mismatch; break;
    case VerifyResult::UnknownScheme:
      l.result = Result::TempFail;
      l.error = std::string(who) + ": unknown password scheme";
      break;
    case VerifyResult::Malformed:
      l.result = Result::TempFail;
      l.error = std::string(who) + ": malformed stored password";
      break;
  }
}

}  // namespace portier::passdb
