#include "protocols/common/backend_base.hpp"

#include "core/base64.hpp"
#include "core/secure.hpp"
#include "core/text.hpp"
#include "net/address.hpp"

namespace portier::protocols::common {

BackendBase::BackendBase(const login::BackendLoginParams& p)
    : user_(p.user),
      password_(p.password.view()),
      master_(p.master),
      mech_(p.mech),
      backend_host_(p.host),
      backend_port_(p.port),
      starttls_(p.starttls),
      not_trusted_(p.not_trusted),
      forward_(p.forward),
      client_(p.client) {}

BackendBase::~BackendBase() = default;  // password_ wipes itself

login::BackendEvent BackendBase::redirected(std::string reason, std::string_view target) {
  auto ev = fail(login::FailureType::AuthRedirect, std::move(reason));
  failure_.redirect.assign(target);
  return ev;
}

login::BackendEvent BackendBase::fail(login::FailureType type, std::string reason,
                                      std::string client_reply) {
  finished_ = true;
  password_.clear();
  sasl_.reset();
  failure_.type = type;
  failure_.reason = std::move(reason);
  failure_.client_reply = std::move(client_reply);
  return login::BackendEvent::Failure;
}

bool BackendBase::start_sasl(bool authzid_always, bool host_port) {
  const bool master = !master_.empty();
  const std::string_view authzid = master || authzid_always ? std::string_view(user_) : "";
  sasl::ClientParams cp;
  if (host_port) {
    cp.host = backend_host_;
    cp.port = backend_port_;
  }
  sasl_ = sasl::make_client_mech(mech_, authzid, master ? master_ : user_, password_.view(), cp);
  password_.clear();
  return sasl_ != nullptr;
}

void BackendBase::reserve_output(size_t secret_bytes) {
  output_.reserve(output_.size() + 2 * secret_bytes + 512);
}

void BackendBase::append_base64(std::string_view raw) {
  std::string b64 = core::base64_encode(raw);
  reserve_output(b64.size());
  output_ += b64;
  core::secure_zero(b64);
}

BackendBase::Answer BackendBase::answer_challenge(std::string_view challenge,
                                                  std::string_view before,
                                                  std::string_view after) {
  std::optional<std::string> raw = core::base64_decode(challenge);
  if (!raw) return Answer::BadBase64;
  std::optional<std::string> response = sasl_ ? sasl_->step(*raw) : std::nullopt;
  if (!response) return Answer::Unexpected;
  if (sasl_->failure_reported() && failure_.sasl_challenge.empty())
    failure_.sasl_challenge.assign(challenge);
  output_ += before;
  append_base64(*response);
  output_ += after;
  core::secure_zero(*response);
  return Answer::Sent;
}

std::string plain_ip(const asio::ip::address& a) { return net::plain_text(a); }

unsigned next_ttl(const login::ClientInfo& c) { return c.proxy_ttl > 0 ? c.proxy_ttl - 1 : 0; }

std::string forward_base64(const std::vector<std::pair<std::string, std::string>>& forward) {
  std::string fwd;
  for (const auto& [k, v] : forward) {
    if (!fwd.empty()) fwd += '\t';
    core::append_tabescaped(fwd, k + "=" + v);
  }
  return core::base64_encode(fwd);
}

}  // namespace portier::protocols::common
