// What the TLS black-box tests share: the real clients they drive (the openssl command line and curl),
// certificates made at run time with `openssl req` (none is committed), and s_client's report of a
// handshake. Header-only, on top of harness.h.
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "../harness.h"

namespace baton_test {

// Runs a tool to completion, stdin /dev/null.
inline RunResult run_tool(const std::string& tool, const std::vector<std::string>& args, Millis timeout = 20000ms) {
  RunOptions o;
  o.binary = tool_path(tool);
  o.timeout = timeout;
  return run_baton_with(args, o);
}

enum class KeyType { kRsa, kEcdsa };

// A self-signed certificate for `name` (CN and subjectAltName) with its key, written to cert and key.
inline ::testing::AssertionResult make_certificate(const std::string& name, const std::string& cert,
                                                   const std::string& key, KeyType type = KeyType::kRsa) {
  std::vector<std::string> args = {"req", "-x509", "-nodes", "-days", "2", "-subj", "/CN=" + name,
                                   "-addext", "subjectAltName=DNS:" + name, "-keyout", key, "-out", cert};
  if (type == KeyType::kRsa) {
    args.insert(args.begin() + 2, {"-newkey", "rsa:2048"});
  } else {
    args.insert(args.begin() + 2, {"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"});
  }
  RunResult r = run_tool("openssl", args);
  if (r.exit_code != 0) return ::testing::AssertionFailure() << "openssl req failed: " << r.err;
  return ::testing::AssertionSuccess();
}

// A certificate authority (self-signed, CA:true) and a client certificate for `name` that it signed.
inline ::testing::AssertionResult make_ca(const std::string& name, const std::string& cert, const std::string& key) {
  RunResult r = run_tool("openssl", {"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                                     "-days", "2", "-subj", "/CN=" + name, "-addext", "basicConstraints=critical,CA:true",
                                     "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-keyout", key, "-out", cert});
  if (r.exit_code != 0) return ::testing::AssertionFailure() << "openssl req (CA) failed: " << r.err;
  return ::testing::AssertionSuccess();
}

inline ::testing::AssertionResult make_client_certificate(const std::string& subject, const std::string& ca_cert,
                                                          const std::string& ca_key, const std::string& cert,
                                                          const std::string& key) {
  std::string csr = cert + ".csr";
  RunResult r = run_tool("openssl", {"req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                                     "-subj", subject, "-keyout", key, "-out", csr});
  if (r.exit_code != 0) return ::testing::AssertionFailure() << "openssl req (client) failed: " << r.err;
  r = run_tool("openssl", {"x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key, "-CAcreateserial", "-days", "2",
                           "-out", cert});
  if (r.exit_code != 0) return ::testing::AssertionFailure() << "openssl x509 -req failed: " << r.err;
  return ::testing::AssertionSuccess();
}

// One handshake with `openssl s_client` (then an immediate close): its report on stdout, with the
// certificate's subject, "Protocol  : TLSv1.3", "ALPN protocol: ..." and the like.
struct Handshake {
  bool ok = false;  // the handshake completed
  std::string out;
  std::string err;
  // The server's certificate as s_client prints it (PEM, as in the file it came from).
  std::string certificate() const { return first_pem(out); }
  static std::string first_pem(const std::string& text) {
    size_t at = text.find("-----BEGIN CERTIFICATE-----");
    if (at == std::string::npos) return "";
    std::string end_mark = "-----END CERTIFICATE-----";
    size_t end = text.find(end_mark, at);
    return end == std::string::npos ? "" : text.substr(at, end + end_mark.size() - at);
  }
  // The session was resumed ("Reused, TLSv1.2, ..." rather than "New, ...").
  bool reused() const { return contains(out, "\nReused, "); }
  // The negotiated version, from s_client's "New, TLSv1.3, Cipher is ..." line ("" when none).
  std::string protocol() const {
    size_t at = out.find("\nNew, ");
    if (at == std::string::npos) return "";
    at += 6;
    size_t end = out.find(',', at);
    return end == std::string::npos ? "" : out.substr(at, end - at);
  }
  // The value after "NAME" up to the end of its line ("" when absent), e.g. field("subject=").
  std::string field(std::string_view name) const {
    size_t at = out.find(name);
    if (at == std::string::npos) return "";
    at += name.size();
    size_t end = out.find('\n', at);
    std::string v = out.substr(at, end == std::string::npos ? std::string::npos : end - at);
    while (!v.empty() && (v.back() == '\r' || v.back() == ' ')) v.pop_back();
    while (!v.empty() && v.front() == ' ') v.erase(0, 1);
    return v;
  }
};

inline Handshake s_client(int port, const std::vector<std::string>& extra) {
  std::vector<std::string> args = {"s_client", "-connect", "127.0.0.1:" + std::to_string(port)};
  args.insert(args.end(), extra.begin(), extra.end());
  RunResult r = run_tool("openssl", args);
  Handshake h;
  h.out = r.out;
  h.err = r.err;
  // s_client prints the negotiated cipher once a handshake has completed; "(NONE)" otherwise.
  h.ok = contains(r.out, "Cipher is ") && !contains(r.out, "Cipher is (NONE)");
  return h;
}

}  // namespace baton_test
