#include "test_pki.hpp"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <vector>

#include "process.hpp"

namespace fleet::testing {
namespace {

constexpr const char* kOpenssl = "/usr/bin/openssl";

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

}  // namespace

absl::Status TestPki::run_openssl(const std::string& args) const {
  // Subjects are passed without spaces, so a plain split is enough.
  std::vector<std::string> argv = split(args);
  for (auto& a : argv) {
    if (a.rfind("@/", 0) == 0) a = dir_ + a.substr(1);  // @/x: a file in dir_
  }
  Child child = spawn(kOpenssl, argv);
  int code = -1;
  const std::string out = finish(child, &code, std::chrono::seconds(30));
  if (code != 0) {
    return absl::InternalError("openssl " + args + " failed (exit " +
                               std::to_string(code) + "): " + out);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<TestPki>> TestPki::create() {
  if (::access(kOpenssl, X_OK) != 0) {
    return absl::FailedPreconditionError(
        "openssl not found: the TLS tests need Debian's openssl package");
  }
  char tmpl[] = "/tmp/fleet-pki-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) return absl::InternalError("mkdtemp failed");
  std::unique_ptr<TestPki> pki(new TestPki(tmpl));
  {
    std::ofstream ext(pki->dir_ + "/server.ext");
    ext << "basicConstraints=CA:FALSE\n"
           "keyUsage=digitalSignature,keyEncipherment\n"
           "extendedKeyUsage=serverAuth\n"
           "subjectAltName=IP:127.0.0.1,DNS:localhost\n";
    std::ofstream client(pki->dir_ + "/client.ext");
    client << "basicConstraints=CA:FALSE\n"
              "keyUsage=digitalSignature\n"
              "extendedKeyUsage=clientAuth\n";
  }
  const std::string key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
  for (const std::string& cmd : {
           "req -x509 " + key +
               " -keyout @/ca.key -out @/ca.crt -days 2 -subj /CN=fleet-test-ca",
           "req -x509 " + key +
               " -keyout @/other-ca.key -out @/other-ca.crt -days 2 -subj "
               "/CN=fleet-other-ca",
           "req " + key +
               " -keyout @/server.key -out @/server.csr -subj /CN=fleet-test-redis",
           std::string(
               "x509 -req -in @/server.csr -CA @/ca.crt -CAkey @/ca.key -set_serial 2 "
               "-days 2 -out @/server.crt -extfile @/server.ext"),
           "req " + key +
               " -keyout @/client.key -out @/client.csr -subj /CN=fleet-test-client",
           std::string(
               "x509 -req -in @/client.csr -CA @/ca.crt -CAkey @/ca.key -set_serial 3 "
               "-days 2 -out @/client.crt -extfile @/client.ext"),
       }) {
    if (auto st = pki->run_openssl(cmd); !st.ok()) return st;
  }
  return pki;
}

TestPki::~TestPki() {
  for (const char* f : {"ca.key", "ca.crt", "other-ca.key", "other-ca.crt", "server.key",
                        "server.csr", "server.crt", "server.ext", "client.key",
                        "client.csr", "client.crt", "client.ext"}) {
    ::unlink((dir_ + "/" + f).c_str());
  }
  ::rmdir(dir_.c_str());
}

const TestPki& shared_test_pki() {
  static std::unique_ptr<TestPki> pki = [] {
    auto p = TestPki::create();
    if (!p.ok()) {
      std::fprintf(stderr, "FATAL: cannot make the test PKI: %s\n",
                   p.status().ToString().c_str());
      std::abort();
    }
    return *std::move(p);
  }();
  return *pki;
}

}  // namespace fleet::testing
