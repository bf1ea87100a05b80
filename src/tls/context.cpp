#include "tls/context.hpp"

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <map>

namespace portier::tls {

bool kernel_has_ktls() {
  // The "tls" ULP is listed once the kernel has CONFIG_TLS (built in or loaded).
  std::ifstream f("/proc/sys/net/ipv4/tcp_available_ulp");
  std::string ulps((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  return ulps.find("tls") != std::string::npos;
}

void enable_ktls(SSL_CTX* ctx) {
#ifdef SSL_OP_ENABLE_KTLS
  SSL_CTX_set_options(ctx, SSL_OP_ENABLE_KTLS);
#else
  (void)ctx;
#endif
}

std::string last_error() {
  std::string out;
  unsigned long e;
  while ((e = ERR_get_error()) != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += ", ";
    out += buf;
  }
  return out.empty() ? "unknown error" : out;
}

namespace {
void common_setup(SSL_CTX* ctx) {
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  // Idle TLS connections keep no 17 KiB read/write buffers.
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                            SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                              SSL_OP_IGNORE_UNEXPECTED_EOF);
}
}  // namespace

core::Result<CtxPtr> make_server_context(const std::string& cert, const std::string& key) {
  CtxPtr ctx(SSL_CTX_new(TLS_server_method()));
  if (!ctx) {
    return core::fail(last_error());
  }
  common_setup(ctx.get());
  // Client records carry passwords: OpenSSL wipes decrypted bytes from its
  // read buffer once they are handed over (our own copies are wiped by us).
  SSL_CTX_set_options(ctx.get(), SSL_OP_CLEANSE_PLAINTEXT);
  // No server-side session cache: it would keep an SSL_SESSION per client in
  // memory. Resumption still works through stateless tickets.
  SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_OFF);
  if (SSL_CTX_use_certificate_chain_file(ctx.get(), cert.c_str()) != 1) {
    return core::fail("cannot load certificate " + cert + ": " + last_error());
  }
  if (SSL_CTX_use_PrivateKey_file(ctx.get(), key.c_str(), SSL_FILETYPE_PEM) != 1) {
    return core::fail("cannot load key " + key + ": " + last_error());
  }
  if (SSL_CTX_check_private_key(ctx.get()) != 1) {
    return core::fail("key " + key + " does not match certificate " + cert);
  }
  return ctx;
}

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

// Client-certificate settings; identical on every server context, because
// OpenSSL verifies with the store of the context selected by SNI.
core::Result<void> setup_client_verify(SSL_CTX* ctx, const ServerTlsOptions& o) {
  // Resumed sessions keep the peer certificate; OpenSSL refuses resumption
  // with verification on unless a session id context is set.
  static const unsigned char kSidCtx[] = "portier";
  SSL_CTX_set_session_id_context(ctx, kSidCtx, sizeof kSidCtx - 1);
  if (o.verify == VerifyClient::None) return {};
  if (SSL_CTX_load_verify_locations(ctx, o.client_ca.c_str(), nullptr) != 1)
    return core::fail("cannot load client_ca " + o.client_ca + ": " + last_error());
  if (STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(o.client_ca.c_str()))
    SSL_CTX_set_client_CA_list(ctx, names);
  if (!o.crl.empty()) {
    X509_STORE* store = SSL_CTX_get_cert_store(ctx);
    X509_LOOKUP* lookup = X509_STORE_add_lookup(store, X509_LOOKUP_file());
    if (!lookup || X509_load_cert_crl_file(lookup, o.crl.c_str(), X509_FILETYPE_PEM) <= 0)
      return core::fail("cannot load crl " + o.crl + ": " + last_error());
    X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
  }
  if (o.verify == VerifyClient::Required) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  } else {
    // Optional: the handshake goes on whatever the chain; the verdict stays
    // in SSL_get_verify_result() and decides whether EXTERNAL is offered.
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, [](int, X509_STORE_CTX*) { return 1; });
  }
  return {};
}

int servername_cb(SSL* ssl, int*, void* arg) {
  const auto* self = static_cast<const ServerContexts*>(arg);
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (!name) return SSL_TLSEXT_ERR_NOACK;
  if (SSL_CTX* c = self->select(name); c && c != SSL_get_SSL_CTX(ssl)) SSL_set_SSL_CTX(ssl, c);
  return SSL_TLSEXT_ERR_OK;
}

}  // namespace

core::Result<std::unique_ptr<ServerContexts>> ServerContexts::build(
    const std::vector<ServerCert>& certs, const ServerTlsOptions& opts) {
  auto out = std::make_unique<ServerContexts>();
  // Certificates with the same name set share a context (RSA + ECDSA).
  std::map<std::vector<std::string>, std::pair<SSL_CTX*, std::vector<int>>> groups;
  for (const auto& c : certs) {
    std::vector<std::string> key;
    for (const auto& n : c.names) key.push_back(lower(n));
    std::sort(key.begin(), key.end());
    key.erase(std::unique(key.begin(), key.end()), key.end());
    auto& [ctx, key_types] = groups[key];
    if (!ctx) {
      auto made = make_server_context(c.cert, c.key);
      if (!made) return core::fail(made.error().message);
      ctx = made->get();
      out->ctxs_.push_back(std::move(*made));
      if (auto v = setup_client_verify(ctx, opts); !v) return core::fail(v.error().message);
      if (opts.ktls) enable_ktls(ctx);
      if (key.empty() && !out->default_) out->default_ = ctx;
      for (const auto& n : key) {
        if (n.rfind("*.", 0) == 0) out->wildcard_.emplace(n.substr(2), ctx);
        else out->exact_.emplace(n, ctx);
      }
    } else {
      if (SSL_CTX_use_certificate_chain_file(ctx, c.cert.c_str()) != 1)
        return core::fail("cannot load certificate " + c.cert + ": " + last_error());
      if (SSL_CTX_use_PrivateKey_file(ctx, c.key.c_str(), SSL_FILETYPE_PEM) != 1)
        return core::fail("cannot load key " + c.key + ": " + last_error());
      if (SSL_CTX_check_private_key(ctx) != 1)
        return core::fail("key " + c.key + " does not match certificate " + c.cert);
    }
    X509* x = SSL_CTX_get0_certificate(ctx);
    int type = x ? EVP_PKEY_get_base_id(X509_get0_pubkey(x)) : 0;
    if (std::find(key_types.begin(), key_types.end(), type) != key_types.end())
      return core::fail("certificate " + c.cert +
                        ": a second certificate of the same key type for the same names");
    key_types.push_back(type);
  }
  if (out->ctxs_.empty()) return core::fail("no certificate");
  if (!out->default_) out->default_ = out->ctxs_.front().get();
  if (out->ctxs_.size() > 1) {
    SSL_CTX_set_tlsext_servername_callback(out->default_, servername_cb);
    SSL_CTX_set_tlsext_servername_arg(out->default_, out.get());
  }
  return out;
}

CtxPtr ServerContexts::default_ref() const {
  SSL_CTX_up_ref(default_);
  return CtxPtr(default_);
}

SSL_CTX* ServerContexts::select(std::string_view sni) const {
  std::string name = normalize_server_name(sni);
  if (name.empty()) return nullptr;
  if (auto it = exact_.find(name); it != exact_.end()) return it->second;
  // `*.example.net` covers exactly one label: a.example.net, not
  // example.net nor a.b.example.net.
  size_t dot = name.find('.');
  if (dot == std::string::npos || dot == 0) return nullptr;
  if (auto it = wildcard_.find(name.substr(dot + 1)); it != wildcard_.end()) return it->second;
  return nullptr;
}

std::string normalize_server_name(std::string_view name) {
  if (name.empty() || name.size() > 253) return {};
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.' || c == '_';
    if (!ok) return {};
  }
  return lower(name);
}

namespace {
constexpr std::string_view kSanPrefix = "subjectAltName:";

// A user name must be printable text without spaces (it goes into passdb
// queries and protocol lines).
bool usable_user(std::string_view u) {
  if (u.empty() || u.size() > 255) return false;
  return std::all_of(u.begin(), u.end(),
                     [](char c) { return static_cast<unsigned char>(c) > 0x20 && c != 0x7f; });
}

std::string san_value(X509* x, int type) {
  std::string out;
  auto* sans = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(x, NID_subject_alt_name, nullptr, nullptr));
  if (!sans) return out;
  for (int i = 0; i < sk_GENERAL_NAME_num(sans) && out.empty(); ++i) {
    const GENERAL_NAME* g = sk_GENERAL_NAME_value(sans, i);
    if (g->type != type) continue;
    const ASN1_IA5STRING* s = g->d.ia5;
    out.assign(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
               static_cast<size_t>(ASN1_STRING_length(s)));
  }
  GENERAL_NAMES_free(sans);
  return out;
}

int san_type(std::string_view field) {
  std::string kind = lower(field.substr(kSanPrefix.size()));
  if (kind == "email") return GEN_EMAIL;
  if (kind == "dns") return GEN_DNS;
  if (kind == "uri") return GEN_URI;
  return -1;
}

std::string subject_value(X509* x, int nid) {
  X509_NAME* subj = X509_get_subject_name(x);
  int idx = X509_NAME_get_index_by_NID(subj, nid, -1);
  if (idx < 0) return {};
  const ASN1_STRING* d = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, idx));
  unsigned char* utf8 = nullptr;
  int n = ASN1_STRING_to_UTF8(&utf8, d);
  if (n < 0) return {};
  std::string out(reinterpret_cast<char*>(utf8), static_cast<size_t>(n));
  OPENSSL_free(utf8);
  return out;
}
}  // namespace

bool valid_username_field(std::string_view field) {
  if (field.rfind(kSanPrefix, 0) == 0) return san_type(field) >= 0;
  return OBJ_txt2nid(std::string(field).c_str()) != NID_undef;
}

PeerInfo peer_info(SSL* ssl, std::string_view username_field) {
  PeerInfo p;
  if (const char* n = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name))
    p.sni = normalize_server_name(n);
  X509* x = SSL_get0_peer_certificate(ssl);
  if (!x) return p;
  p.cert_presented = true;
  long v = SSL_get_verify_result(ssl);
  if (v != X509_V_OK) {
    p.verify_error = X509_verify_cert_error_string(v);
    return p;
  }
  // Only a context that asked for certificates verified this one.
  if (!(SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER)) return p;
  p.cert_valid = true;
  std::string user;
  if (username_field.rfind(kSanPrefix, 0) == 0) {
    int t = san_type(username_field);
    if (t >= 0) user = san_value(x, t);
  } else {
    int nid = OBJ_txt2nid(std::string(username_field).c_str());
    if (nid != NID_undef) user = subject_value(x, nid);
  }
  if (usable_user(user)) p.cert_user = std::move(user);
  return p;
}

core::Result<CtxPtr> make_client_context(bool verify, const std::string& ca_file,
                                         const std::string& cert, const std::string& key) {
  CtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx) {
    return core::fail(last_error());
  }
  common_setup(ctx.get());
  if (verify) {
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
    int ok = ca_file.empty() ? SSL_CTX_set_default_verify_paths(ctx.get())
                             : SSL_CTX_load_verify_locations(ctx.get(), ca_file.c_str(), nullptr);
    if (ok != 1) {
      return core::fail("cannot load CA " + (ca_file.empty() ? std::string("defaults") : ca_file) + ": " +
              last_error());
    }
  } else {
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
  }
  if (!cert.empty()) {
    if (SSL_CTX_use_certificate_chain_file(ctx.get(), cert.c_str()) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx.get(), key.c_str(), SSL_FILETYPE_PEM) != 1) {
      return core::fail("cannot load backend client certificate: " + last_error());
    }
  }
  return ctx;
}

}  // namespace portier::tls
