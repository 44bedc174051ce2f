# Conan 2 recipe for fleet (docs/packaging.md).
#
#   conan create . --build=missing                 # library, TLS on
#   conan create . -o "&:with_tls=False"           # without hiredis_ssl/OpenSSL
#   conan create . -pr:a tests/package/conan/system.profile ...
#                                                  # dependencies from the system
#
# The package holds the static (or, with shared=True, shared) library, its
# headers and nothing else: Catch2 and cpp-httplib are needed only by
# fleet's own tests and examples, which are built only with with_tests=True.
# Consumers use CMakeDeps: find_package(fleet CONFIG), target fleet::fleet.
import os
import re

from conan import ConanFile
from conan.errors import ConanInvalidConfiguration
from conan.tools.build import check_min_cppstd
from conan.tools.cmake import CMake, CMakeDeps, CMakeToolchain, cmake_layout
from conan.tools.files import copy, load, rmdir

required_conan_version = ">=2.0"


class FleetConan(ConanFile):
    name = "fleet"
    description = ("Coordination for many instances of one service on Redis: membership, "
                   "node state, owned counters, fenced locks, leader election, maps, "
                   "watches, messaging, slot pools and request routing")
    license = "Apache-2.0"
    topics = ("redis", "coordination", "distributed-lock", "leader-election", "routing")
    package_type = "library"
    settings = "os", "arch", "compiler", "build_type"
    options = {
        "shared": [True, False],
        "fPIC": [True, False],
        # rediss:// (hiredis_ssl and OpenSSL).
        "with_tls": [True, False],
        # fleet's tests and examples too (they need a redis-server to run).
        "with_tests": [True, False],
    }
    default_options = {
        "shared": False,
        "fPIC": True,
        "with_tls": True,
        "with_tests": False,
    }
    exports_sources = ("CMakeLists.txt", "LICENSE", "README.md", "cmake/*", "include/*",
                       "src/*", "docs/*", "examples/*", "tests/*", "benchmarks/*")

    def set_version(self):
        cmakelists = load(self, os.path.join(self.recipe_folder, "CMakeLists.txt"))
        self.version = re.search(r"project\(fleet VERSION ([0-9.]+)", cmakelists).group(1)

    def config_options(self):
        if self.settings.os == "Windows":
            del self.options.fPIC

    def configure(self):
        if self.options.shared:
            self.options.rm_safe("fPIC")
        if self.options.with_tls:
            self.options["hiredis"].with_ssl = True

    def layout(self):
        cmake_layout(self)

    def requirements(self):
        # hiredis and OpenSSL are private to fleet (no hiredis type is in its
        # headers); Abseil's Status is in them, so Abseil is public.
        self.requires("hiredis/[>=1.0 <2]")
        self.requires("fmt/[>=9]")
        self.requires("nlohmann_json/[>=3.10 <4]")
        self.requires("abseil/[>=20220623]", transitive_headers=True)
        if self.options.with_tls:
            self.requires("openssl/[>=1.1 <4]")
        if self.options.with_tests:
            self.requires("cpp-httplib/[>=0.11]")

    def build_requirements(self):
        if self.options.with_tests:
            self.test_requires("catch2/[>=3 <4]")

    def validate(self):
        check_min_cppstd(self, 17)
        if self.settings.os == "Windows":
            raise ConanInvalidConfiguration("fleet uses POSIX sockets and poll(): not Windows")

    def generate(self):
        tc = CMakeToolchain(self)
        tests = bool(self.options.with_tests)
        tc.cache_variables["FLEET_BUILD_TESTS"] = tests
        tc.cache_variables["FLEET_BUILD_EXAMPLES"] = tests  # the tests run fleetctl
        tc.cache_variables["FLEET_BUILD_BENCHMARKS"] = False
        tc.cache_variables["FLEET_INSTALL"] = True
        tc.cache_variables["FLEET_TLS"] = "ON" if self.options.with_tls else "OFF"
        tc.generate()
        CMakeDeps(self).generate()

    def build(self):
        cmake = CMake(self)
        cmake.configure()
        cmake.build()
        if self.options.with_tests and not self.conf.get("tools.build:skip_test", default=False):
            cmake.test(cli_args=["--output-on-failure", "-LE", "package"])

    def package(self):
        copy(self, "LICENSE", self.source_folder, os.path.join(self.package_folder, "licenses"))
        CMake(self).install()
        # Conan consumers get CMakeDeps' files from package_info() below.
        rmdir(self, os.path.join(self.package_folder, "lib", "cmake"))
        rmdir(self, os.path.join(self.package_folder, "share"))

    def package_info(self):
        self.cpp_info.set_property("cmake_file_name", "fleet")
        self.cpp_info.set_property("cmake_target_name", "fleet::fleet")
        self.cpp_info.libs = ["fleet"]
        if self.settings.os in ("Linux", "FreeBSD"):
            self.cpp_info.system_libs = ["pthread"]
