#include "redis/tls.hpp"

#include "fmt/format.h"

#if FLEET_HAVE_TLS
#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <hiredis/hiredis_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#endif

namespace fleet {

bool tls_supported() { return FLEET_HAVE_TLS != 0; }

}  // namespace fleet

namespace fleet::internal {

absl::Status missing_client_certificate(std::string_view where, std::string_view detail) {
  return absl::UnauthenticatedError(fmt::format(
      "Redis at {} requires a TLS client certificate and none is configured (set "
      "RedisTlsOptions::cert_file and key_file): {}",
      where, detail));
}

#if FLEET_HAVE_TLS

namespace {

bool is_ip_address(const std::string& s) {
  in_addr v4{};
  in6_addr v6{};
  return inet_pton(AF_INET, s.c_str(), &v4) == 1 ||
         inet_pton(AF_INET6, s.c_str(), &v6) == 1;
}

// The first error in the queue is the cause; later ones are consequences.
std::string describe(unsigned long e) {
  if (const char* reason = ERR_reason_error_string(e)) return reason;
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

absl::Status bad_file(std::string_view option, const std::string& path,
                      std::string_view what) {
  std::string why = TlsContext::take_error();
  return absl::InvalidArgumentError(fmt::format("RedisTlsOptions::{} '{}': {}{}{}",
                                                option, path, what,
                                                why.empty() ? "" : ": ", why));
}

// Called by OpenSSL when the server asks for a client certificate and none
// is set: notes it (the SSL's app data points at a bool) and sends none.
int note_certificate_request(SSL* ssl, X509**, EVP_PKEY**) {
  if (auto* asked = static_cast<bool*>(SSL_get_app_data(ssl))) *asked = true;
  return 0;
}

}  // namespace

struct TlsContext::Impl {
  SSL_CTX* ctx = nullptr;
  std::string name;  // verified, and sent as SNI when it is a DNS name
  bool name_is_ip = false;
  bool verify = true;
  ~Impl() {
    if (ctx != nullptr) SSL_CTX_free(ctx);
  }
};

std::string TlsContext::take_error() {
  const unsigned long first = ERR_get_error();
  ERR_clear_error();
  return first == 0 ? std::string() : describe(first);
}

void TlsContext::clear_errors() { ERR_clear_error(); }

absl::StatusOr<std::shared_ptr<const TlsContext>> TlsContext::create(
    const RedisTlsOptions& o, const std::string& host) {
  if (o.cert_file.empty() != o.key_file.empty()) {
    return absl::InvalidArgumentError(
        "RedisTlsOptions: cert_file and key_file go together (set both or neither)");
  }
  auto impl = std::make_unique<Impl>();
  impl->name = o.server_name.empty() ? host : o.server_name;
  impl->name_is_ip = is_ip_address(impl->name);
  impl->verify = o.verify_peer;
  if (impl->verify && impl->name.empty()) {
    return absl::InvalidArgumentError(
        "TLS: no server name to verify the certificate against");
  }
  clear_errors();
  impl->ctx = SSL_CTX_new(TLS_client_method());
  if (impl->ctx == nullptr) {
    return absl::InternalError(
        fmt::format("TLS: cannot create an OpenSSL context: {}", take_error()));
  }
  SSL_CTX_set_min_proto_version(impl->ctx, TLS1_2_VERSION);
  SSL_CTX_set_verify(impl->ctx, impl->verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE,
                     nullptr);
  if (!o.ca_file.empty() || !o.ca_dir.empty()) {
    const char* file = o.ca_file.empty() ? nullptr : o.ca_file.c_str();
    const char* dir = o.ca_dir.empty() ? nullptr : o.ca_dir.c_str();
    // OpenSSL looks into a CA directory only when it verifies a
    // certificate: a directory that is not there would only show as a
    // failed verification, so it is checked here.
    struct stat st {};
    if (dir != nullptr && (::stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))) {
      return absl::InvalidArgumentError(
          fmt::format("RedisTlsOptions::ca_dir '{}': not a directory", o.ca_dir));
    }
    if (SSL_CTX_load_verify_locations(impl->ctx, file, dir) != 1) {
      return o.ca_file.empty()
                 ? bad_file("ca_dir", o.ca_dir, "cannot use it as a CA directory")
                 : bad_file("ca_file", o.ca_file, "cannot load CA certificates");
    }
  } else if (SSL_CTX_set_default_verify_paths(impl->ctx) != 1) {
    return absl::InternalError(
        fmt::format("TLS: cannot load the system's trust store: {}", take_error()));
  }
  if (o.cert_file.empty()) {
    SSL_CTX_set_client_cert_cb(impl->ctx, note_certificate_request);
  } else {
    if (SSL_CTX_use_certificate_chain_file(impl->ctx, o.cert_file.c_str()) != 1) {
      return bad_file("cert_file", o.cert_file, "cannot load a PEM certificate");
    }
    if (SSL_CTX_use_PrivateKey_file(impl->ctx, o.key_file.c_str(), SSL_FILETYPE_PEM) !=
        1) {
      return bad_file("key_file", o.key_file, "cannot load a PEM private key");
    }
    if (SSL_CTX_check_private_key(impl->ctx) != 1) {
      return bad_file("key_file", o.key_file, "is not the key of cert_file");
    }
  }
  return std::shared_ptr<const TlsContext>(new TlsContext(std::move(impl)));
}

absl::StatusOr<bool> TlsContext::handshake(redisContext* ctx,
                                           std::string_view where) const {
  clear_errors();
  SSL* ssl = SSL_new(impl_->ctx);
  if (ssl == nullptr) {
    return absl::ResourceExhaustedError(
        fmt::format("TLS: cannot create a connection object: {}", take_error()));
  }
  bool ok = true;
  if (!impl_->name_is_ip) ok = SSL_set_tlsext_host_name(ssl, impl_->name.c_str()) == 1;
  if (ok && impl_->verify) {
    if (impl_->name_is_ip) {
      ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), impl_->name.c_str()) == 1;
    } else {
      SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      ok = SSL_set1_host(ssl, impl_->name.c_str()) == 1;
    }
  }
  if (!ok) {
    SSL_free(ssl);
    return absl::InvalidArgumentError(fmt::format(
        "TLS: cannot use '{}' as the server name: {}", impl_->name, take_error()));
  }
  bool cert_requested = false;
  SSL_set_app_data(ssl, &cert_requested);
  // On success hiredis owns ssl (redisFree frees it); on failure we do.
  if (redisInitiateSSL(ctx, ssl) == REDIS_OK) {
    SSL_set_app_data(ssl, nullptr);
    return cert_requested;
  }
  const long verdict = SSL_get_verify_result(ssl);
  // On a blocking socket whose timeout ran out, OpenSSL says it wants to
  // read (or write) more; hiredis reports that without a reason.
  const int state = SSL_get_error(ssl, -1);
  const bool timed_out = state == SSL_ERROR_WANT_READ || state == SSL_ERROR_WANT_WRITE;
  std::string why = take_error();
  SSL_free(ssl);
  if (impl_->verify && verdict != X509_V_OK) {
    return absl::UnauthenticatedError(fmt::format(
        "the TLS certificate of Redis at {} failed verification: {} (expected name '{}')",
        where, X509_verify_cert_error_string(verdict), impl_->name));
  }
  if (cert_requested) {  // TLS 1.2: the refusal comes within the handshake
    return missing_client_certificate(where, why);
  }
  const std::string hiredis_why = ctx->errstr;
  if (why.empty()) why = hiredis_why;
  if (timed_out || hiredis_why.find("temporarily unavailable") != std::string::npos) {
    return absl::UnavailableError(
        fmt::format("TLS handshake with Redis at {} timed out (connect_timeout)", where));
  }
  return absl::UnavailableError(
      fmt::format("TLS handshake with Redis at {} failed: {} (does that port speak TLS?)",
                  where, why));
}

#else  // !FLEET_HAVE_TLS

struct TlsContext::Impl {};

std::string TlsContext::take_error() { return {}; }

void TlsContext::clear_errors() {}

absl::StatusOr<std::shared_ptr<const TlsContext>> TlsContext::create(
    const RedisTlsOptions&, const std::string&) {
  return absl::InvalidArgumentError(
      "rediss:// needs TLS, and this build of fleet has none: build fleet with hiredis "
      "1.x "
      "and hiredis_ssl (CMake option FLEET_TLS=ON)");
}

absl::StatusOr<bool> TlsContext::handshake(redisContext*, std::string_view) const {
  return absl::InternalError("TLS handshake on a build without TLS");
}

#endif  // FLEET_HAVE_TLS

TlsContext::TlsContext(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TlsContext::~TlsContext() = default;

}  // namespace fleet::internal
