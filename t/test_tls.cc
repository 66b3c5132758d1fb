// HTTPS as real clients see it: `listen = ... ssl` with certificates made at run time, TLS 1.2 and 1.3
// (1.1 refused), SNI choosing the certificate of the server a name belongs to (RSA and ECDSA), ALPN,
// $scheme, large files byte-exact and keep-alive over TLS, plain HTTP sent to the TLS port, clients
// that never complete a handshake, and the configuration errors a certificate can cause, each with
// its file:line. The clients are `openssl s_client` and `curl`; the tests skip without them
// (`auto/deps --test` installs both).
#include <atomic>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"
#include "lib/tls_util.h"

using namespace baton_test;

namespace {

class Tls : public ::testing::Test {
 protected:
  void SetUp() override {
    if (tool_path("openssl").empty()) GTEST_SKIP() << "openssl is not installed (Debian package openssl; auto/deps --test)";
    if (tool_path("curl").empty()) GTEST_SKIP() << "curl is not installed (auto/deps --test)";
    s.write_file("html/index.html", "index\n");
    ASSERT_TRUE(make_certificate("a.test", s.path("conf/a.crt"), s.path("conf/a.key"), KeyType::kRsa));
    ASSERT_TRUE(make_certificate("b.test", s.path("conf/b.crt"), s.path("conf/b.key"), KeyType::kEcdsa));
  }

  // Two servers on one TLS address (a.test the default, RSA; b.test, ECDSA) and a plain one.
  std::string servers(std::string_view a_extra = "") {
    return "[server a]\n"
           "listen = 127.0.0.1:@PORT@ ssl\n"
           "server_name = a.test\n"
           "root = html\n"
           "ssl_certificate = conf/a.crt\n"
           "ssl_certificate_key = conf/a.key\n" +
           std::string(a_extra) +
           "[location = /scheme]\n"
           "return = 200 \"a $scheme $host\"\n"
           "[server b]\n"
           "listen = 127.0.0.1:@PORT@ ssl\n"
           "server_name = b.test\n"
           "ssl_certificate = conf/b.crt\n"
           "ssl_certificate_key = conf/b.key\n"
           "[location /]\n"
           "return = 200 \"b $scheme\"\n"
           "[server plain]\n"
           "listen = 127.0.0.1:@PORT2@\n"
           "[location /]\n"
           "return = 200 \"plain $scheme\"\n";
  }

  void start(std::string_view a_extra = "", std::string_view http_extra = "") {
    // info: what becomes of clients that do not complete a handshake is logged at that level.
    s.set_config(make_config_main("log_level = info\n", servers(a_extra), http_extra));
    ASSERT_TRUE(s.start());
  }

  std::string url(std::string_view host, std::string_view path) {
    return "https://" + std::string(host) + ":" + std::to_string(s.port()) + std::string(path);
  }
  std::string resolve(std::string_view host) {
    return std::string(host) + ":" + std::to_string(s.port()) + ":127.0.0.1";
  }
  // curl -s over TLS, trusting only the certificate of `ca` (a file under conf/).
  RunResult curl(std::vector<std::string> args, std::string_view ca = "conf/a.crt") {
    std::vector<std::string> all = {"-sS", "--cacert", s.path(ca)};
    all.insert(all.end(), args.begin(), args.end());
    return run_tool("curl", all);
  }

  BatonServer s;
};

TEST_F(Tls, ServesHttpsAndSaysSoInScheme) {
  start();
  // Verified against the server's own certificate: the name, the chain and the key all fit.
  RunResult r = curl({"--resolve", resolve("a.test"), url("a.test", "/scheme")});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "a https a.test");
  r = curl({"--resolve", resolve("a.test"), url("a.test", "/index.html")});
  EXPECT_EQ(r.out, "index\n") << r.err;
  // The plain address of the same configuration still says http.
  EXPECT_EQ(get(s.port(1), "/").body, "plain http");
}

TEST_F(Tls, SniChoosesTheCertificateOfTheServerNamed) {
  start();
  Handshake a = s_client(s.port(), {"-servername", "a.test"});
  ASSERT_TRUE(a.ok) << a.out << a.err;
  EXPECT_TRUE(contains(a.field("subject="), "CN = a.test")) << a.out;
  Handshake b = s_client(s.port(), {"-servername", "b.test"});
  ASSERT_TRUE(b.ok) << b.out << b.err;
  EXPECT_TRUE(contains(b.field("subject="), "CN = b.test")) << b.out;
  EXPECT_TRUE(contains(b.out, "Server Temp Key") || contains(b.out, "ecdsa") || contains(b.out, "EC")) << b.out;
  // A name no server has, and no name at all: the address's default server's certificate.
  for (std::vector<std::string> extra : {std::vector<std::string>{"-servername", "c.test"},
                                         std::vector<std::string>{"-noservername"}}) {
    Handshake d = s_client(s.port(), extra);
    ASSERT_TRUE(d.ok) << d.out << d.err;
    EXPECT_TRUE(contains(d.field("subject="), "CN = a.test")) << d.out;
  }
  // And curl, verifying b's certificate for b.test, is answered by server b.
  RunResult r = curl({"--resolve", resolve("b.test"), url("b.test", "/")}, "conf/b.crt");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "b https");
}

TEST_F(Tls, Tls12And13AreSpokenOlderVersionsAreRefused) {
  start();
  Handshake v13 = s_client(s.port(), {"-tls1_3"});
  ASSERT_TRUE(v13.ok) << v13.out << v13.err;
  EXPECT_EQ(v13.protocol(), "TLSv1.3") << v13.out;
  Handshake v12 = s_client(s.port(), {"-tls1_2"});
  ASSERT_TRUE(v12.ok) << v12.out << v12.err;
  EXPECT_EQ(v12.protocol(), "TLSv1.2") << v12.out;
  Handshake v11 = s_client(s.port(), {"-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"});
  EXPECT_FALSE(v11.ok) << v11.out;
  // The server goes on serving.
  EXPECT_TRUE(s_client(s.port(), {}).ok);
}

TEST_F(Tls, SslProtocolsNarrowsTheVersions) {
  start("ssl_protocols = TLSv1.3\n");
  // The version is a property of the address's handshake, which the default server's settings lead.
  Handshake v12 = s_client(s.port(), {"-tls1_2"});
  EXPECT_FALSE(v12.ok) << v12.out;
  Handshake v13 = s_client(s.port(), {"-tls1_3"});
  EXPECT_TRUE(v13.ok) << v13.out << v13.err;
}

TEST_F(Tls, AlpnChoosesHttp11) {
  start();
  Handshake h = s_client(s.port(), {"-alpn", "h2,http/1.1"});
  ASSERT_TRUE(h.ok) << h.out << h.err;
  EXPECT_EQ(h.field("ALPN protocol:"), "http/1.1") << h.out;
  // A client that offers only another protocol still gets its handshake, without ALPN.
  Handshake other = s_client(s.port(), {"-alpn", "h2"});
  EXPECT_TRUE(other.ok) << other.out << other.err;
  EXPECT_TRUE(contains(other.out, "No ALPN negotiated")) << other.out;
}

TEST_F(Tls, ALargeFileArrivesWholeAndKeepAliveHolds) {
  std::string content = s.write_generated("html/big.bin", 10 * 1024 * 1024 + 123, 7);
  start();
  std::string out = s.path("big.out");
  RunResult r = curl({"--resolve", resolve("a.test"), "-o", out, url("a.test", "/big.bin")});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(same_bytes(read_file(out), content));
  // 100 requests on one connection: curl opens one, and reuses it for the rest.
  r = curl({"--resolve", resolve("a.test"), "-o", "/dev/null", "-w", "%{num_connects} ", url("a.test", "/index.html?[1-100]")});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  int connects = 0, transfers = 0;
  for (size_t at = 0; at < r.out.size();) {
    size_t sp = r.out.find(' ', at);
    if (sp == std::string::npos) break;
    connects += std::stoi(r.out.substr(at, sp - at));
    transfers++;
    at = sp + 1;
  }
  EXPECT_EQ(transfers, 100) << r.out;
  EXPECT_EQ(connects, 1) << r.out;
}

TEST_F(Tls, PlainHttpOnTheTlsPortIsTold400) {
  start();
  Client c(s.port());
  ASSERT_TRUE(c.send(req("GET", "/index.html")));
  auto r = c.read_response();
  ASSERT_TRUE(r) << c.error();
  EXPECT_TRUE(is_error_page(*r, 400, "Bad Request")) << *r;
  EXPECT_TRUE(c.is_closed_by_peer(2000ms));
  EXPECT_TRUE(contains(s.error_log(), "plain HTTP request to the TLS address")) << s.error_log();
}

TEST_F(Tls, ClientsThatNeverFinishAHandshakeAreClosed) {
  start("", "client_header_timeout = 1s\n");
  // Bytes that are not TLS: closed at once, without an answer.
  Client garbage(s.port());
  ASSERT_TRUE(garbage.send(std::string("\x01\x02\x03 not a client hello\r\n\r\n", 27)));
  EXPECT_TRUE(garbage.is_closed_by_peer(2000ms));
  EXPECT_EQ(garbage.buffered(), 0u);
  // A TLS record header that never completes, and a client that sends nothing: the header timeout.
  Client partial(s.port());
  ASSERT_TRUE(partial.send(std::string("\x16\x03\x01\x02\x00\x01", 6)));
  Client silent(s.port());
  auto t0 = SteadyClock::now();
  EXPECT_TRUE(partial.is_closed_by_peer(5000ms));
  EXPECT_TRUE(silent.is_closed_by_peer(5000ms));
  EXPECT_GE(SteadyClock::now() - t0, 800ms);
  EXPECT_TRUE(contains(s.error_log(), "timed out in the TLS handshake")) << s.error_log();
  // Meanwhile and after, real clients are served.
  RunResult r = curl({"--resolve", resolve("a.test"), url("a.test", "/scheme")});
  EXPECT_EQ(r.out, "a https a.test") << r.err;
}

TEST_F(Tls, AProxyProtocolHeaderMayComeBeforeTheHandshake) {
  s.set_config(make_config_main("log_level = info\n",
                                "[server pp]\n"
                                "listen = 127.0.0.1:@PORT@ ssl proxy_protocol\n"
                                "ssl_certificate = conf/a.crt\n"
                                "ssl_certificate_key = conf/a.key\n"
                                "[location /]\n"
                                "return = 200 \"pp $scheme $remote_addr\"\n"));
  ASSERT_TRUE(s.start());
  // curl sends a v1 header (with its own address), then its ClientHello.
  RunResult r = curl({"--haproxy-protocol", "--resolve", resolve("a.test"), url("a.test", "/")});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "pp https 127.0.0.1");
  // The header's client is the connection's peer for what follows it, here a plain HTTP request.
  Client c(s.port());
  ASSERT_TRUE(c.send("PROXY TCP4 203.0.113.9 127.0.0.1 5555 443\r\n" + req("GET", "/")));
  auto plain = c.read_response();
  ASSERT_TRUE(plain) << c.error();
  EXPECT_EQ(plain->status, 400);
  EXPECT_TRUE(wait_for([&] { return contains(s.error_log(), "client 203.0.113.9:5555 sent a plain HTTP request"); }, 2000ms))
      << s.error_log();
  // Without the header: closed, as on any proxy_protocol address.
  Client bare(s.port());
  ASSERT_TRUE(bare.send(req("GET", "/")));
  EXPECT_TRUE(bare.is_closed_by_peer(2000ms));
}

TEST_F(Tls, AReloadTakesARenewedCertificateAndKeepsTheOldWhenTheNewIsBroken) {
  start();
  std::string first = s_client(s.port(), {}).certificate();
  ASSERT_EQ(first, Handshake::first_pem(read_file(s.path("conf/a.crt"))));
  // Renewed in place, as certbot and friends do it, then a reload.
  ASSERT_TRUE(make_certificate("a.test", s.path("conf/a.crt"), s.path("conf/a.key"), KeyType::kRsa));
  std::string renewed = Handshake::first_pem(read_file(s.path("conf/a.crt")));
  ASSERT_NE(renewed, first);
  RunResult r = s.ctl("reload");
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_TRUE(wait_for([&] { return s_client(s.port(), {}).certificate() == renewed; }, 10000ms));
  // A broken file: the reload is refused with the line, and the renewed certificate stays in service.
  s.write_file("conf/a.crt", "-----BEGIN CERTIFICATE-----\ntruncated\n");
  r = s.ctl("reload");
  EXPECT_NE(r.exit_code, 0) << r.out << r.err;
  std::string where = s.config_path() + ":" + std::to_string(line_of(s.config_text(), "conf/a.crt")) + ":";
  EXPECT_TRUE(contains(r.out + r.err + s.error_log(), where)) << r.out << r.err << s.error_log();
  EXPECT_EQ(s_client(s.port(), {}).certificate(), renewed);
  // A new binary meets the same broken file: the upgrade is rolled back, the old one serves on.
  r = s.ctl("upgrade");
  EXPECT_NE(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(s_client(s.port(), {}).certificate(), renewed);
  s.write_file("conf/renewed.pem", renewed + "\n");
  RunResult c = curl({"--resolve", resolve("a.test"), url("a.test", "/scheme")}, "conf/renewed.pem");
  EXPECT_EQ(c.exit_code, 0) << c.err;
  EXPECT_EQ(c.out, "a https a.test");
}

// ---- sessions ----

TEST_F(Tls, AReloadAndAnUpgradeUnderTlsLoadFailNoRequest) {
  s.set_config(make_runtime_config(servers(), "", 2));
  ASSERT_TRUE(s.start());
  // Clients that keep their connections (50 requests each) and start again, until told to stop.
  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, failed{0};
  std::string failures;
  std::mutex mu;
  auto load = [&] {
    std::vector<std::string> args = {"--resolve", resolve("a.test"), "-o", "/dev/null", "-w", "%{http_code}\n"};
    for (int i = 0; i < 50; i++) args.push_back(url("a.test", "/index.html?" + std::to_string(i)));
    while (!stop) {
      RunResult r = curl(args);
      size_t at = 0;
      int lines = 0;
      while (at < r.out.size()) {
        size_t nl = r.out.find('\n', at);
        if (nl == std::string::npos) break;
        std::string code = r.out.substr(at, nl - at);
        (code == "200" ? ok : failed)++;
        if (code != "200") {
          std::lock_guard<std::mutex> g(mu);
          failures += code + " ";
        }
        lines++;
        at = nl + 1;
      }
      if (lines != 50 || r.exit_code != 0) {
        failed += 50 - lines;
        std::lock_guard<std::mutex> g(mu);
        failures += "[curl " + std::to_string(r.exit_code) + ": " + r.err + "] ";
      }
    }
  };
  std::vector<std::thread> clients;
  for (int i = 0; i < 3; i++) clients.emplace_back(load);
  std::this_thread::sleep_for(500ms);
  RunResult r = s.ctl("reload");
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  std::this_thread::sleep_for(500ms);
  r = s.ctl("upgrade");
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  std::this_thread::sleep_for(800ms);
  stop = true;
  for (auto& t : clients) t.join();
  EXPECT_GT(ok.load(), 100);
  EXPECT_EQ(failed.load(), 0) << failures;
}

TEST_F(Tls, VariablesDescribeTheConnection) {
  start("[location = /vars]\nreturn = 200 \"$ssl_protocol|$ssl_cipher|$ssl_server_name|$ssl_session_reused\"\n");
  RunResult r = curl({"--resolve", resolve("a.test"), "--tlsv1.3", url("a.test", "/vars")});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(matches_pattern(r.out, "TLSv1.3|TLS_%*|a.test|.")) << r.out;
  // The second request of one curl, on a new connection, resumes the first one's session.
  r = curl({"--resolve", resolve("a.test"), "-H", "Connection: close", url("a.test", "/vars"), "--next", "-sS", "--cacert",
            s.path("conf/a.crt"), "--resolve", resolve("a.test"), "-H", "Connection: close", url("a.test", "/vars")});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(r.out.ends_with("|a.test|r")) << r.out;
  // On a plain connection they are empty.
  EXPECT_EQ(get(s.port(1), "/").body, "plain http");
}

TEST_F(Tls, SessionsResumeOnEveryWorkerAndAcrossAReloadAndAnUpgrade) {
  s.set_config(make_config(servers(), "", 2));
  ASSERT_TRUE(s.start());
  ASSERT_TRUE(wait_for([&] { return s.current_workers().size() == 2; }, 5000ms));
  std::string sess = s.path("session.pem");
  // TLS 1.2: the ticket comes in the handshake, and s_client keeps it in a file.
  Handshake first = s_client(s.port(), {"-tls1_2", "-sess_out", sess});
  ASSERT_TRUE(first.ok) << first.out << first.err;
  EXPECT_FALSE(first.reused());
  // Connections land on either worker: every one resumes.
  for (int i = 0; i < 8; i++) {
    Handshake again = s_client(s.port(), {"-tls1_2", "-sess_in", sess});
    ASSERT_TRUE(again.ok) << again.out << again.err;
    EXPECT_TRUE(again.reused()) << "connection " << i << "\n" << again.out;
  }
  RunResult r = s.ctl("reload");
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  Handshake after_reload = s_client(s.port(), {"-tls1_2", "-sess_in", sess});
  EXPECT_TRUE(after_reload.reused()) << after_reload.out;
  r = s.ctl("upgrade");
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  for (int i = 0; i < 4; i++) {
    Handshake after_upgrade = s_client(s.port(), {"-tls1_2", "-sess_in", sess});
    EXPECT_TRUE(after_upgrade.reused()) << after_upgrade.out;
  }
}

TEST_F(Tls, WithoutTicketsAndCacheNothingResumes) {
  start("ssl_session_tickets = off\nssl_session_cache = off\n");
  std::string sess = s.path("session.pem");
  Handshake first = s_client(s.port(), {"-tls1_2", "-sess_out", sess});
  ASSERT_TRUE(first.ok) << first.out;
  // The server gave the client neither a ticket nor a session id: s_client has nothing to keep.
  EXPECT_FALSE(file_exists(sess)) << first.out;
}

TEST_F(Tls, TicketKeyFilesLetSessionsOutliveTheServer) {
  // A fleet behind one name shares key files: a ticket from one server (here: from before a full
  // stop and start) opens on another.
  std::string key(80, '\0');
  for (size_t i = 0; i < key.size(); i++) key[i] = static_cast<char>((i * 73 + 11) & 0xff);
  s.write_file("conf/ticket.key", key);
  start("ssl_session_ticket_key = conf/ticket.key\n");
  std::string sess = s.path("session.pem");
  ASSERT_TRUE(s_client(s.port(), {"-tls1_2", "-sess_out", sess}).ok);
  ASSERT_TRUE(s.stop(SIGQUIT));
  ASSERT_TRUE(s.start());
  Handshake again = s_client(s.port(), {"-tls1_2", "-sess_in", sess});
  EXPECT_TRUE(again.reused()) << again.out;
}

// ---- client certificates ----

class TlsClientCert : public Tls {
 protected:
  void SetUp() override {
    Tls::SetUp();
    if (IsSkipped()) return;
    ASSERT_TRUE(make_ca("Test CA", s.path("conf/ca.crt"), s.path("conf/ca.key")));
    ASSERT_TRUE(make_ca("Other CA", s.path("conf/other-ca.crt"), s.path("conf/other-ca.key")));
    ASSERT_TRUE(make_client_certificate("/CN=alice/O=Example", s.path("conf/ca.crt"), s.path("conf/ca.key"),
                                        s.path("conf/alice.crt"), s.path("conf/alice.key")));
    ASSERT_TRUE(make_client_certificate("/CN=mallory", s.path("conf/other-ca.crt"), s.path("conf/other-ca.key"),
                                        s.path("conf/mallory.crt"), s.path("conf/mallory.key")));
  }
  void start_verifying(std::string_view mode) {
    start("ssl_verify_client = " + std::string(mode) + "\nssl_client_certificate = conf/ca.crt\n"
          "[location = /who]\nreturn = 200 \"$ssl_client_verify|$ssl_client_s_dn|$ssl_client_i_dn\"\n");
  }
  // curl to a.test's /who, with a client certificate (by name under conf/) or none.
  RunResult who(std::string_view client = "") {
    std::vector<std::string> args = {"--resolve", resolve("a.test"), "-w", "|%{http_code}"};
    if (!client.empty()) {
      args.insert(args.end(), {"--cert", s.path("conf/" + std::string(client) + ".crt"), "--key",
                               s.path("conf/" + std::string(client) + ".key")});
    }
    args.push_back(url("a.test", "/who"));
    return curl(args);
  }
};

TEST_F(TlsClientCert, RequiredCertificatesAreCheckedInHttp) {
  start_verifying("on");
  RunResult r = who("alice");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "SUCCESS|O=Example,CN=alice|CN=Test CA|200");
  // None, or one from another CA: the handshake completes and the request is refused, with a reason
  // in the error log.
  r = who();
  EXPECT_TRUE(r.out.ends_with("|400")) << r.out << r.err;
  r = who("mallory");
  EXPECT_TRUE(r.out.ends_with("|400")) << r.out << r.err;
  std::string log = s.error_log();
  EXPECT_TRUE(contains(log, "sent no required client certificate")) << log;
  EXPECT_TRUE(contains(log, "sent a client certificate that does not verify")) << log;
  // The CA list the server names to clients is the configured one.
  Handshake h = s_client(s.port(), {"-servername", "a.test"});
  EXPECT_TRUE(contains(h.out, "Acceptable client certificate CA names\nCN = Test CA")) << h.out;
}

TEST_F(TlsClientCert, OptionalAcceptsNoneButNotABadOne) {
  start_verifying("optional");
  EXPECT_EQ(who().out, "NONE|||200");
  EXPECT_EQ(who("alice").out, "SUCCESS|O=Example,CN=alice|CN=Test CA|200");
  EXPECT_TRUE(who("mallory").out.ends_with("|400"));
}

TEST_F(TlsClientCert, OptionalNoCaPassesTheVerdictOn) {
  start_verifying("optional_no_ca");
  RunResult r = who("mallory");
  EXPECT_TRUE(matches_pattern(r.out, "FAILED:%*|CN=mallory|CN=Other CA|200")) << r.out;
  // Another server on the address, reached by its name, asks for nothing.
  r = curl({"--resolve", resolve("b.test"), url("b.test", "/")}, "conf/b.crt");
  EXPECT_EQ(r.out, "b https") << r.err;
}

TEST_F(TlsClientCert, TheServerThatAnswersDecides) {
  // a.test requires a certificate, b.test does not: a handshake for b.test (no certificate asked
  // for) with a request for a.test is refused.
  start_verifying("on");
  RunResult r = curl({"--resolve", resolve("b.test"), "-H", "Host: a.test", "-w", "|%{http_code}", url("b.test", "/who")},
                     "conf/b.crt");
  EXPECT_TRUE(r.out.ends_with("|400")) << r.out << r.err;
}

// ---- OCSP stapling ----

TEST_F(TlsClientCert, AConfiguredOcspResponseIsStapled) {
  // A server certificate from the test CA, and the CA's own OCSP answer for it ("good").
  ASSERT_TRUE(make_client_certificate("/CN=a.test", s.path("conf/ca.crt"), s.path("conf/ca.key"), s.path("conf/srv.crt"),
                                      s.path("conf/srv.key")));
  RunResult serial = run_tool("openssl", {"x509", "-in", s.path("conf/srv.crt"), "-noout", "-serial"});
  ASSERT_EQ(serial.exit_code, 0) << serial.err;
  std::string hex = serial.out.substr(serial.out.find('=') + 1);
  while (!hex.empty() && (hex.back() == '\n' || hex.back() == '\r')) hex.pop_back();
  s.write_file("conf/index.txt", "V\t301231235959Z\t\t" + hex + "\tunknown\t/CN=a.test\n");
  RunResult r = run_tool("openssl", {"ocsp", "-issuer", s.path("conf/ca.crt"), "-cert", s.path("conf/srv.crt"), "-no_nonce",
                                     "-reqout", s.path("conf/req.der")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_tool("openssl", {"ocsp", "-index", s.path("conf/index.txt"), "-rsigner", s.path("conf/ca.crt"), "-rkey",
                           s.path("conf/ca.key"), "-CA", s.path("conf/ca.crt"), "-reqin", s.path("conf/req.der"),
                           "-respout", s.path("conf/ocsp.der"), "-ndays", "1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // Server a serves that certificate, with the staple.
  s.set_config(make_config(replace_all(replace_all(servers("ssl_stapling = on\nssl_stapling_file = conf/ocsp.der\n"),
                                                   "conf/a.crt", "conf/srv.crt"),
                                       "conf/a.key", "conf/srv.key")));
  ASSERT_TRUE(s.start());
  Handshake h = s_client(s.port(), {"-status", "-servername", "a.test"});
  ASSERT_TRUE(h.ok) << h.out << h.err;
  EXPECT_TRUE(contains(h.out, "OCSP Response Status: successful")) << h.out;
  EXPECT_TRUE(contains(h.out, "Cert Status: good")) << h.out;
  // b.test has no staple: it says so.
  Handshake b = s_client(s.port(), {"-status", "-servername", "b.test"});
  ASSERT_TRUE(b.ok) << b.out << b.err;
  EXPECT_TRUE(contains(b.out, "OCSP response: no response sent")) << b.out;
}

// ---- TLS to upstreams ----

class TlsUpstream : public TlsClientCert {
 protected:
  // Server a (TLS, on PORT) is the upstream; a plain server on PORT2 proxies to it with `front`
  // (its location's keys), through [upstream up] (keepalive as given).
  void start_front(std::string_view front, std::string_view a_extra = "", int keepalive = 8) {
    std::string conf = servers(std::string(a_extra) +
                               "[location = /seen]\n"
                               "return = 200 \"$scheme|$ssl_server_name|$ssl_session_reused|$ssl_client_s_dn\"\n");
    conf = replace_all(conf, "[server plain]\nlisten = 127.0.0.1:@PORT2@\n[location /]\nreturn = 200 \"plain $scheme\"\n",
                       "[upstream up]\nserver = 127.0.0.1:@PORT@\nkeepalive = " + std::to_string(keepalive) +
                           "\n[server front]\nlisten = 127.0.0.1:@PORT2@\n[location /]\nproxy_pass = https://up\n" +
                           std::string(front));
    s.set_config(make_config_main("log_level = info\n", conf));
    ASSERT_TRUE(s.start());
  }
  Response seen() { return get(s.port(1), "/seen"); }
};

TEST_F(TlsUpstream, VerifiedWithSniAndTheName) {
  start_front("proxy_ssl_verify = on\nproxy_ssl_trusted_certificate = conf/a.crt\nproxy_ssl_name = a.test\n"
              "proxy_ssl_server_name = on\nproxy_set_header = Host a.test\n");
  Response r = seen();
  EXPECT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body, "https|a.test|.|") << r;
  // A large body arrives whole through both TLS hops.
  std::string content = s.write_generated("html/big.bin", 3 * 1024 * 1024 + 7, 3);
  EXPECT_TRUE(same_bytes(get(s.port(1), "/big.bin").body, content));
}

TEST_F(TlsUpstream, WithoutServerNameNoSniIsSent) {
  start_front("");
  Response r = seen();
  EXPECT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body, "https||.|") << r;
}

TEST_F(TlsUpstream, ACertificateThatDoesNotVerifyIs502) {
  // Trusting b's certificate, not a's; then trusting a's for another name.
  start_front("proxy_ssl_verify = on\nproxy_ssl_trusted_certificate = conf/b.crt\n"
              "[location /wrong-name/]\nproxy_pass = https://up/\nproxy_ssl_verify = on\n"
              "proxy_ssl_trusted_certificate = conf/a.crt\nproxy_ssl_name = c.test\n");
  EXPECT_TRUE(is_error_page(seen(), 502, "Bad Gateway"));
  EXPECT_TRUE(is_error_page(get(s.port(1), "/wrong-name/seen"), 502, "Bad Gateway"));
  std::string log = s.error_log();
  EXPECT_TRUE(contains(log, "SSL handshake with the upstream failed: certificate verify error")) << log;
}

TEST_F(TlsUpstream, SessionsAreResumedOnNewConnections) {
  // No idle upstream connections: each request opens one, and resumes the last one's session.
  start_front("", "", 0);
  EXPECT_EQ(seen().body, "https||.|");
  EXPECT_TRUE(wait_for([&] { return seen().body == "https||r|"; }, 3000ms));
}

TEST_F(TlsUpstream, WithoutSessionReuseEveryHandshakeIsFull) {
  start_front("proxy_ssl_session_reuse = off\n", "", 0);
  for (int i = 0; i < 3; i++) EXPECT_EQ(seen().body, "https||.|");
}

TEST_F(TlsUpstream, AClientCertificateIsShownToAnUpstreamThatAsks) {
  start_front("proxy_ssl_certificate = conf/alice.crt\nproxy_ssl_certificate_key = conf/alice.key\n"
              "[location /anonymous/]\nproxy_pass = https://up/\n",
              "ssl_verify_client = on\nssl_client_certificate = conf/ca.crt\n");
  Response r = seen();
  EXPECT_EQ(r.body, "https||.|O=Example,CN=alice") << r;
  EXPECT_EQ(get(s.port(1), "/anonymous/seen").status, 400);
}

// ---- configuration ----

// The configuration with one more line in [server a].
std::string with_line(const std::string& base, const std::string& line) {
  return replace_all(base, "server_name = a.test\n", "server_name = a.test\n" + line);
}

class TlsConfig : public Tls {
 protected:
  // -t on `config`; the error expected on the line that holds `needle` (or `below` lines under it).
  void expect_error(const std::string& config, std::string_view needle, std::string_view message, int below = 0) {
    s.set_config(config);
    RunResult r = s.test_config();
    EXPECT_NE(r.exit_code, 0) << r.out << r.err;
    int line = line_of(s.config_text(), needle);
    ASSERT_GT(line, 0) << needle;
    line += below;
    std::string where = s.config_path() + ":" + std::to_string(line) + ":";
    EXPECT_TRUE(contains(r.err, where)) << "expected " << where << " in:\n" << r.err;
    EXPECT_TRUE(contains(r.err, message)) << "expected \"" << message << "\" in:\n" << r.err;
  }
};

TEST_F(TlsConfig, AValidConfigurationPassesTheTest) {
  s.set_config(make_config(servers()));
  RunResult r = s.test_config();
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST_F(TlsConfig, CertificateProblemsNameTheirLine) {
  std::string base = make_config(servers());
  expect_error(replace_all(base, "conf/b.crt", "conf/missing.crt"), "conf/missing.crt", "cannot load certificate");
  s.write_file("conf/broken.crt", "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n");
  expect_error(replace_all(base, "conf/b.crt", "conf/broken.crt"), "conf/broken.crt", "cannot load certificate");
  expect_error(replace_all(base, "conf/b.key", "conf/missing.key"), "conf/missing.key", "cannot load certificate key");
  // b's certificate with a's key.
  expect_error(replace_all(base, "ssl_certificate_key = conf/b.key", "ssl_certificate_key = conf/a.key"),
               "ssl_certificate = conf/b.crt", "does not match", 1);
}

TEST_F(TlsConfig, MistakesAroundCertificatesAreRefused) {
  std::string base = make_config(servers());
  // A TLS server without a certificate.
  expect_error(replace_all(replace_all(base, "ssl_certificate = conf/b.crt\n", ""), "ssl_certificate_key = conf/b.key\n", ""),
               "[server b]", "no \"ssl_certificate\" for [server b]");
  // A certificate without its key.
  expect_error(replace_all(base, "ssl_certificate_key = conf/b.key\n", ""), "ssl_certificate = conf/b.crt",
               "needs its \"ssl_certificate_key\"");
  expect_error(with_line(base, "ssl_protocols = TLSv1.2 TLSv2\n"),
               "ssl_protocols", "unknown protocol \"TLSv2\"");
  expect_error(with_line(base, "ssl_protocols = TLSv1.1 TLSv1.3\n"),
               "ssl_protocols", "without a gap");
  expect_error(with_line(base, "ssl_ciphers = NO-SUCH-CIPHER\n"),
               "ssl_ciphers", "invalid ssl_ciphers");
  // nginx's old switch, and an address that is TLS for one server and plain for another.
  expect_error(with_line(base, "ssl = on\n"), "ssl = on",
               "listen = ADDR:PORT ssl");
  expect_error(replace_all(base, "listen = 127.0.0.1:@PORT2@\n", "listen = 127.0.0.1:@PORT@\n"),
               "[server plain]", "conflict", 1);
  // A [location] is no place for a certificate.
  expect_error(replace_all(base, "[location /]\nreturn = 200 \"b $scheme\"\n",
                           "[location /]\nssl_certificate = conf/in-location.crt\nreturn = 200 \"b $scheme\"\n"),
               "conf/in-location.crt", "belongs in");
}

TEST_F(TlsConfig, SessionKeysAreChecked) {
  std::string base = make_config(servers());
  s.write_file("conf/short.key", "0123456789");
  expect_error(with_line(base, "ssl_session_ticket_key = conf/short.key\n"),
               "conf/short.key", "must hold 48 or 80 bytes");
  expect_error(with_line(base, "ssl_session_ticket_key = conf/none.key\n"),
               "conf/none.key", "cannot open ticket key file");
  expect_error(with_line(base, "ssl_session_cache = shared:SSL:10m\n"),
               "ssl_session_cache", "sessions resume across workers with tickets");
  expect_error(with_line(base, "ssl_session_cache = lots\n"),
               "ssl_session_cache", "off, none, builtin");
}

TEST_F(TlsConfig, ClientCertificateSettingsAreChecked) {
  std::string base = make_config(servers());
  expect_error(with_line(base, "ssl_verify_client = on\n"),
               "ssl_verify_client", "needs the CAs to check against");
  expect_error(with_line(base, "ssl_verify_client = sometimes\n"),
               "ssl_verify_client", "optional_no_ca");
  expect_error(replace_all(base, "server_name = a.test\n",
                           "server_name = a.test\nssl_verify_client = on\nssl_client_certificate = conf/no-ca.crt\n"),
               "conf/no-ca.crt", "cannot load CA certificates");
}

TEST_F(TlsConfig, UpstreamTlsSettingsAreChecked) {
  std::string base = make_config(servers() + "[server front]\nlisten = 127.0.0.1:@PORT3@\n[location /]\n"
                                             "proxy_pass = https://127.0.0.1:@PORT@\n");
  expect_error(base + "proxy_ssl_verify = on\n", "proxy_ssl_verify", "needs the CAs to check the upstream against");
  expect_error(base + "proxy_ssl_certificate = conf/alice.crt\n", "proxy_ssl_certificate", "go together");
  expect_error(base + "proxy_ssl_verify = on\nproxy_ssl_trusted_certificate = conf/none.pem\n", "conf/none.pem",
               "cannot load CA certificates");
  expect_error(base + "proxy_ssl_protocols = SSLv3\n", "proxy_ssl_protocols", "unknown protocol");
  // And the plain scheme still says what it accepts.
  expect_error(replace_all(base, "https://", "ftp://"), "ftp://", "proxy_pass = http[s]://");
}

TEST_F(TlsConfig, StaplingAndRecordSizeAreChecked) {
  std::string base = make_config(servers());
  auto with = [&](std::string_view lines) { return replace_all(base, "server_name = a.test\n", "server_name = a.test\n" + std::string(lines)); };
  expect_error(with("ssl_stapling = on\n"), "ssl_stapling", "needs \"ssl_stapling_file\"");
  expect_error(with("ssl_stapling_file = conf/a.crt\n"), "ssl_stapling_file", "used with \"ssl_stapling = on\"");
  expect_error(with("ssl_stapling = on\nssl_stapling_file = conf/a.crt\n"), "ssl_stapling_file",
               "is not a successful OCSP response");
  expect_error(with("ssl_stapling = on\nssl_stapling_file = conf/none.der\n"), "ssl_stapling_file", "cannot open OCSP response");
  expect_error(with("ssl_buffer_size = 64k\n"), "ssl_buffer_size", "between 512 and 16k");
}

TEST_F(TlsConfig, CertificatesInHttpServeEveryServerThatHasNone) {
  std::string config = make_config(
      "[server only]\n"
      "listen = 127.0.0.1:@PORT@ ssl\n"
      "[location /]\n"
      "return = 200 \"inherited $scheme\"\n",
      "ssl_certificate = conf/a.crt\nssl_certificate_key = conf/a.key\n");
  s.set_config(config);
  ASSERT_TRUE(s.start());
  RunResult r = curl({"--resolve", resolve("a.test"), url("a.test", "/")});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "inherited https");
}

}  // namespace
