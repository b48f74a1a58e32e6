// `[server.tls]` (issue 9) with the real binaries: the gateway serves HTTPS only (curl with the
// certificate as its authority gets answers, plain HTTP gets none), the CLI verifies the daemon
// against the configured certificate, and files that are not a matching certificate and key are
// a config error at validate/serve with nothing started.
#include <catch2/catch.hpp>

#include "tests/security/security.hpp"

using namespace provisr::test;
using namespace provisr::test::security;

namespace {

// A self-signed P-256 certificate for 127.0.0.1 and localhost: `<name>.cert.pem`, `<name>.key.pem`.
void makeCert(const TempDir& dir, const std::string& name) {
  auto r = run({"/usr/bin/openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", dir.str() + "/" + name + ".key.pem", "-out", dir.str() + "/" + name + ".cert.pem", "-days", "2",
                "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
}

std::string tlsConfig(const TempDir& dir, int port, const std::string& cert, const std::string& key) {
  return dir.write("config.toml", "[log]\ndir = \"" + dir.str() + "/logs\"\n[server]\nlisten = \"127.0.0.1:" +
                                      std::to_string(port) + "\"\n[server.tls]\ncert_file = \"" + cert + "\"\nkey_file = \"" +
                                      key + "\"\n[[processes]]\ntype = \"process\"\nspec.name = \"web\"\nspec.args = [\"" +
                                      helper("sleeper") + "\"]\n");
}

RunResult curl(const std::vector<std::string>& args) {
  std::vector<std::string> argv{"/usr/bin/curl", "-sS", "--max-time", "5"};
  argv.insert(argv.end(), args.begin(), args.end());
  return run(argv);
}

}  // namespace

TEST_CASE("tls: HTTPS with the configured certificate, plain HTTP refused, the CLI verifies it", "[security][tls]") {
  TempDir dir;
  makeCert(dir, "server");
  makeCert(dir, "other");
  const std::string cert = dir.str() + "/server.cert.pem";
  const int port = freePort();
  const std::string cfg = tlsConfig(dir, port, cert, dir.str() + "/server.key.pem");
  Daemon d(cfg, dir.str() + "/run", dir.str() + "/serve.log");
  INFO(d.log());
  const std::string https = "https://127.0.0.1:" + std::to_string(port) + "/api";
  REQUIRE(waitFor([&] { return curl({"--cacert", cert, https + "/status?name=web"}).out.find("\"running\"") != std::string::npos; },
                  20s));

  auto ok = curl({"--cacert", cert, https + "/status"});
  CHECK(ok.exit_code == 0);
  CHECK(ok.out.find("\"ok\":true") != std::string::npos);
  // Not trusted without the certificate, nor with another one.
  auto untrusted = curl({https + "/status"});
  CHECK(untrusted.exit_code == 60);
  auto wrongCa = curl({"--cacert", dir.str() + "/other.cert.pem", https + "/status"});
  CHECK(wrongCa.exit_code == 60);
  // Plain HTTP on the same port gets no HTTP answer.
  auto plain = curl({"http://127.0.0.1:" + std::to_string(port) + "/api/status"});
  CHECK(plain.exit_code != 0);
  CHECK(plain.out.find("ok") == std::string::npos);

  // The CLI: the URL and the authority from the config.
  auto st = run({binPath("provisr"), "status", "--config", cfg, "-o", "json"});
  INFO(st.err);
  CHECK(st.exit_code == 0);
  CHECK(st.out.find("\"web\"") != std::string::npos);
  // An explicit https URL with PROVISR_CA_FILE.
  auto viaEnv = run({binPath("provisr"), "status", "--api-url", https, "-o", "json"}, "", {{"PROVISR_CA_FILE", cert}});
  INFO(viaEnv.err);
  CHECK(viaEnv.exit_code == 0);
  CHECK(viaEnv.out.find("\"web\"") != std::string::npos);
  // Another authority: the CLI refuses the daemon (not reachable, exit 3), it does not fall back.
  auto wrong = run({binPath("provisr"), "status", "--api-url", https, "-o", "json"}, "",
                   {{"PROVISR_CA_FILE", dir.str() + "/other.cert.pem"}});
  CHECK(wrong.exit_code == 3);
  CHECK(wrong.out.find("\"web\"") == std::string::npos);
  // Plain http to the HTTPS port: not reachable either.
  auto http = run({binPath("provisr"), "status", "--api-url", "http://127.0.0.1:" + std::to_string(port) + "/api"});
  CHECK(http.exit_code == 3);
}

TEST_CASE("tls: files that are not a certificate and its key are config errors, nothing starts", "[security][tls]") {
  TempDir dir;
  makeCert(dir, "server");
  makeCert(dir, "other");
  const std::string cert = dir.str() + "/server.cert.pem";
  const int port = freePort();

  SECTION("validate names a missing file and a key that is a certificate") {
    const std::string missing = tlsConfig(dir, port, dir.str() + "/nope.pem", dir.str() + "/server.key.pem");
    auto v = run({binPath("provisr"), "validate", missing});
    CHECK(v.exit_code == 1);
    CHECK(v.err.find("server.tls.cert_file: cannot use " + dir.str() + "/nope.pem") != std::string::npos);
    const std::string swapped = tlsConfig(dir, port, cert, cert);
    v = run({binPath("provisr"), "validate", swapped});
    CHECK(v.exit_code == 1);
    CHECK(v.err.find("server.tls.key_file: " + cert + " is not a PEM private key") != std::string::npos);
    auto s = run({binPath("provisr"), "serve", swapped, "--run-dir", dir.str() + "/run"}, "", {}, 15s);
    CHECK(s.exit_code == 1);
    CHECK_FALSE(s.timed_out);
  }
  SECTION("serve refuses a key that does not match the certificate") {
    const std::string mismatched = tlsConfig(dir, port, cert, dir.str() + "/other.key.pem");
    ::prctl(PR_SET_CHILD_SUBREAPER, 1);
    auto s = run({binPath("provisr"), "serve", mismatched, "--run-dir", dir.str() + "/run"}, "", {}, 15s);
    const auto leftovers = childrenOfThisProcess();
    Daemon::killOrphans();
    INFO(s.err);
    CHECK_FALSE(s.timed_out);
    CHECK(s.exit_code == 1);
    CHECK(s.err.find("key does not match the certificate") != std::string::npos);
    CHECK(leftovers.empty());
    CHECK_FALSE(std::filesystem::exists(dir.str() + "/run"));
  }
}
