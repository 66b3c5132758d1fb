// The TLS transport on its own, over a socketpair: a server TlsTransport against an OpenSSL client in
// the same thread. What the HTTP tests cannot see from outside: the size of the records a response is
// cut into (small ones first after a pause, then ssl_buffer_size), and that a write OpenSSL asks to
// have repeated succeeds when the caller offers the same bytes again from another buffer.
#include "event/tls.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

namespace baton {
namespace {

// A key and a self-signed certificate made in memory, written as PEM files for the context.
struct Credentials {
  std::string dir, cert, key;
  Credentials() {
    char tmpl[] = "/tmp/baton-tls-unit.XXXXXX";
    dir = mkdtemp(tmpl);
    cert = dir + "/cert.pem";
    key = dir + "/key.pem";
    EVP_PKEY* pkey = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
    X509* x = X509_new();
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, pkey);
    X509_NAME* name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("unit.test"), -1, -1, 0);
    X509_set_issuer_name(x, name);
    X509_sign(x, pkey, EVP_sha256());
    FILE* f = fopen(cert.c_str(), "w");
    PEM_write_X509(f, x);
    fclose(f);
    f = fopen(key.c_str(), "w");
    PEM_write_PrivateKey(f, pkey, nullptr, nullptr, 0, nullptr, nullptr);
    fclose(f);
    X509_free(x);
    EVP_PKEY_free(pkey);
  }
  ~Credentials() {
    unlink(cert.c_str());
    unlink(key.c_str());
    rmdir(dir.c_str());
  }
};

class TlsTransportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TlsServerOptions o;
    o.certificates.push_back({creds.cert, creds.key});
    o.min_version = o.max_version = TLS1_3_VERSION;
    o.record_size = record_size;
    std::string err;
    int bad = -1;
    server_ctx = TlsContext::create_server(o, &err, &bad);
    ASSERT_TRUE(server_ctx) << err;
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    server_fd = sv[0];
    client_fd = sv[1];
    fcntl(server_fd, F_SETFL, O_NONBLOCK);
    fcntl(client_fd, F_SETFL, O_NONBLOCK);
    SSL* s = SSL_new(server_ctx->get());
    SSL_set_fd(s, server_fd);
    SSL_set_accept_state(s);
    server = std::make_unique<TlsTransport>(s, record_size);
    client_ctx = SSL_CTX_new(TLS_client_method());
    client = SSL_new(client_ctx);
    SSL_set_fd(client, client_fd);
    SSL_set_connect_state(client);
    // Both sides in turn until both are done.
    bool server_done = false, client_done = false;
    for (int i = 0; i < 100 && !(server_done && client_done); i++) {
      if (!client_done) client_done = SSL_do_handshake(client) == 1;
      if (!server_done) server_done = server->handshake() == 1;
    }
    ASSERT_TRUE(server_done && client_done);
    // Whatever the handshake left (the server's tickets) is read, so that only new records follow.
    char b[256];
    while (SSL_read(client, b, sizeof(b)) > 0) {
    }
  }
  void TearDown() override {
    if (client) SSL_free(client);
    if (client_ctx) SSL_CTX_free(client_ctx);
    server.reset();
    close(server_fd);
    close(client_fd);
  }

  // The plaintext length of each record the client end receives, from the raw record headers (a
  // TLS 1.3 record carries its content type and a 16-byte tag besides the plaintext).
  std::vector<size_t> raw_records() {
    std::string raw;
    char buf[65536];
    ssize_t n;
    while ((n = read(client_fd, buf, sizeof(buf))) > 0) raw.append(buf, static_cast<size_t>(n));
    std::vector<size_t> out;
    size_t at = 0;
    while (at + 5 <= raw.size()) {
      size_t len = (static_cast<unsigned char>(raw[at + 3]) << 8) | static_cast<unsigned char>(raw[at + 4]);
      EXPECT_EQ(raw[at], 23) << "application data records only";
      out.push_back(len - 17);
      at += 5 + len;
    }
    EXPECT_EQ(at, raw.size());
    return out;
  }

  size_t record_size = 16384;
  Credentials creds;
  std::unique_ptr<TlsContext> server_ctx;
  std::unique_ptr<TlsTransport> server;
  SSL_CTX* client_ctx = nullptr;
  SSL* client = nullptr;
  int server_fd = -1, client_fd = -1;
};

TEST_F(TlsTransportTest, SmallRecordsFirstThenFullOnes) {
  std::string body(60 * 1024, 'x');
  iovec iov{body.data(), body.size()};
  ASSERT_EQ(server->writev(server_fd, &iov, 1, false), static_cast<ssize_t>(body.size()));
  std::vector<size_t> records = raw_records();
  size_t total = 0, small = 0;
  for (size_t r : records) {
    if (total < 14 * 1024) {
      EXPECT_LE(r, 1369u) << "record at " << total;
      small++;
    } else {
      EXPECT_LE(r, 16384u);
    }
    total += r;
  }
  EXPECT_EQ(total, body.size());
  EXPECT_GE(small, 10u);
  // Past the first 14 KiB, full records.
  EXPECT_EQ(records[records.size() - 2], 16384u);
}

TEST_F(TlsTransportTest, SmallPiecesAreGatheredIntoOneRecord) {
  std::string a(100, 'a'), b(200, 'b'), c(300, 'c');
  iovec iov[3] = {{a.data(), a.size()}, {b.data(), b.size()}, {c.data(), c.size()}};
  ASSERT_EQ(server->writev(server_fd, iov, 3, false), 600);
  std::vector<size_t> records = raw_records();
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0], 600u);
}

class TlsTransportSmallBuffer : public TlsTransportTest {
 protected:
  TlsTransportSmallBuffer() { record_size = 4096; }
};

TEST_F(TlsTransportSmallBuffer, TheRecordSizeIsTheConfiguredOneAfterTheStart) {
  std::string body(40 * 1024, 'y');
  iovec iov{body.data(), body.size()};
  ASSERT_EQ(server->writev(server_fd, &iov, 1, false), static_cast<ssize_t>(body.size()));
  std::vector<size_t> records = raw_records();
  size_t total = 0;
  for (size_t r : records) {
    if (total >= 14 * 1024) {
      EXPECT_LE(r, 4096u);
    }
    total += r;
  }
  EXPECT_EQ(records[records.size() - 2], 4096u);
}

TEST_F(TlsTransportTest, AWriteRepeatedFromAnotherBufferGoesThrough) {
  // Fill the socket until OpenSSL says "want write", then offer the same bytes from a copy.
  int small = 4096;
  setsockopt(server_fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
  std::string body(1 << 20, 'z');
  size_t sent = 0;
  ssize_t r = 0;
  while (sent < body.size()) {
    iovec iov{body.data() + sent, body.size() - sent};
    r = server->writev(server_fd, &iov, 1, false);
    if (r < 0) break;
    sent += static_cast<size_t>(r);
  }
  ASSERT_EQ(r, kIoWantWrite);
  std::string copy = body.substr(sent);  // what the output queue would hold
  // The client drains; the transport is offered the copy.
  std::string received;
  char buf[65536];
  int rounds = 0;
  size_t offered = 0;
  while ((sent + offered < body.size() || received.size() < body.size()) && rounds++ < 100000) {
    int n = SSL_read(client, buf, sizeof(buf));
    if (n > 0) received.append(buf, static_cast<size_t>(n));
    if (sent + offered < body.size()) {
      iovec iov{copy.data() + offered, copy.size() - offered};
      ssize_t w = server->writev(server_fd, &iov, 1, false);
      ASSERT_TRUE(w > 0 || w == kIoWantWrite) << w;
      if (w > 0) offered += static_cast<size_t>(w);
    }
  }
  EXPECT_EQ(received.size(), body.size());
  EXPECT_EQ(received, body);
}

}  // namespace
}  // namespace baton
