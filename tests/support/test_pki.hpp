// A throw-away certificate authority for TLS tests, made with Debian's
// openssl command in a temporary directory (removed by the destructor):
// a CA, a server certificate for 127.0.0.1 and localhost signed by it, a
// client certificate signed by it, and a second CA that signed nothing the
// server holds (to see verification fail). EC P-256 keys, valid two days.
#ifndef FLEET_TESTS_SUPPORT_TEST_PKI_HPP_
#define FLEET_TESTS_SUPPORT_TEST_PKI_HPP_

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace fleet::testing {

class TestPki {
 public:
  static absl::StatusOr<std::unique_ptr<TestPki>> create();
  ~TestPki();

  std::string ca_cert() const { return dir_ + "/ca.crt"; }
  std::string server_cert() const { return dir_ + "/server.crt"; }
  std::string server_key() const { return dir_ + "/server.key"; }
  std::string client_cert() const { return dir_ + "/client.crt"; }
  std::string client_key() const { return dir_ + "/client.key"; }
  std::string other_ca_cert() const { return dir_ + "/other-ca.crt"; }
  const std::string& dir() const { return dir_; }

 private:
  explicit TestPki(std::string dir) : dir_(std::move(dir)) {}
  absl::Status run_openssl(const std::string& args) const;
  std::string dir_;
};

// One PKI shared by a whole test executable, made on first use.
const TestPki& shared_test_pki();

}  // namespace fleet::testing

#endif  // FLEET_TESTS_SUPPORT_TEST_PKI_HPP_
