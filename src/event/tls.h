// TLS on OpenSSL behind the connection's transport interface: a server context per certificate set,
// a transport that reads and writes through an SSL object (never blocking: OpenSSL's "want read" and
// "want write" become kIoWantRead / kIoWantWrite), and the first handler of a connection on a TLS
// listener, which drives the handshake on the loop and then hands the connection to HTTP, which never
// knows that it speaks TLS.
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "event/connection.h"

namespace baton {

struct TlsCertificate {
  std::string cert;  // PEM file: the certificate, then its chain
  std::string key;   // PEM file: its private key
};

// Session tickets are sealed with keys every worker derives from one secret, for periods of an hour
// (a ticket stays good for the period it was made in and the next two, within the session timeout).
// The master makes the secret when it starts, keeps it across reloads, and hands it to the new
// master of a live upgrade: no client pays a full handshake because of a change.
inline constexpr size_t kTicketSecretSize = 32;
void tls_make_ticket_secret();
// "OpenSSL 3.0.x  1 Nov 2022", and the library found at run time when it is another one.
std::string tls_library_version();
void tls_set_ticket_secret(const unsigned char* secret);  // kTicketSecretSize bytes
// The secret as hex ("" before one is made), for the hand-over to a new master.
std::string tls_ticket_secret_hex();
bool tls_set_ticket_secret_hex(std::string_view hex);

// A key from an ssl_session_ticket_key file (nginx's format: 48 or 80 random bytes).
struct TlsTicketKey {
  unsigned char name[16];
  unsigned char hmac[32];
  unsigned char aes[32];
  size_t key_len = 32;  // 16 from a 48-byte file (AES-128, HMAC key of 16), 32 from an 80-byte one
};
// Reads a key file; "" or an error.
std::string tls_read_ticket_key(const std::string& path, TlsTicketKey* out);

enum TlsVerify { kVerifyOff = 0, kVerifyOn = 1, kVerifyOptional = 2, kVerifyOptionalNoCa = 3 };

struct TlsServerOptions {
  std::vector<TlsCertificate> certificates;  // one per key type (RSA and ECDSA side by side)
  bool tickets = true;
  std::vector<TlsTicketKey> ticket_keys;  // from files: the first seals, all open; none: derived keys
  long session_timeout = 300;             // seconds a session may be resumed
  long session_cache = -1;                // sessions each worker remembers (-1: OpenSSL's default, 0: none)
  // Client certificates: asked for unless kVerifyOff; checked against these CA files.
  int verify_client = 0;           // TlsVerify
  std::string client_certificate;  // CAs named to the client and trusted
  std::string trusted_certificate;  // CAs trusted without being named
  int verify_depth = 1;
  int min_version = TLS1_2_VERSION;
  int max_version = TLS1_3_VERSION;
  std::string ciphers;                  // TLS 1.2 and below, OpenSSL's syntax; empty: its default
  std::vector<std::string> conf_commands;  // "Name Value" pairs for SSL_CONF_cmd
  bool prefer_server_ciphers = false;
  std::string stapling_file;  // a DER OCSP response, stapled to the handshakes that ask for one
  size_t record_size = 16384;  // ssl_buffer_size: the largest record once a response is under way
};

// TLS to an upstream (proxy_ssl_*).
struct TlsClientOptions {
  int min_version = TLS1_2_VERSION;
  int max_version = TLS1_3_VERSION;
  std::string ciphers;
  bool verify = false;              // the upstream's certificate must verify, for the name
  std::string trusted_certificate;  // CAs it is checked against
  int verify_depth = 1;
  std::string certificate, key;     // a client certificate, when the upstream asks for one
};

// Where the session of the last full handshake with one upstream server is kept, for the next
// connection to resume (proxy_ssl_session_reuse).
class TlsSessionSlot {
 public:
  TlsSessionSlot() = default;
  TlsSessionSlot(const TlsSessionSlot&) = delete;
  TlsSessionSlot& operator=(const TlsSessionSlot&) = delete;
  ~TlsSessionSlot();
  void set(SSL_SESSION* s);  // takes the reference
  SSL_SESSION* get() const { return session_; }

 private:
  SSL_SESSION* session_ = nullptr;
};

// An OpenSSL server context. Made when the configuration is read (so that -t, a start and a reload
// find a broken certificate), inherited by the workers.
class TlsContext {
 public:
  // Null and *err set ("cannot load certificate "PATH": ...") when a file cannot be used.
  // *bad_index: the certificate entry at fault, or -1 when the fault is in another option.
  static std::unique_ptr<TlsContext> create_server(const TlsServerOptions& o, std::string* err, int* bad_index);
  // A client context; *err names the file at fault.
  static std::unique_ptr<TlsContext> create_client(const TlsClientOptions& o, std::string* err);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;
  SSL_CTX* get() const { return ctx_; }
  const std::vector<TlsTicketKey>& ticket_keys() const { return ticket_keys_; }
  const std::string& ocsp_response() const { return ocsp_; }
  size_t record_size() const { return record_size_; }

 private:
  explicit TlsContext(SSL_CTX* ctx) : ctx_(ctx) {}
  SSL_CTX* ctx_;
  std::vector<TlsTicketKey> ticket_keys_;
  std::string ocsp_;  // DER
  size_t record_size_ = 16384;
};

// Chooses the context for the name a client asked for (SNI); null keeps the one it has.
using TlsSelect = SSL_CTX* (*)(void* arg, std::string_view name);

class TlsTransport final : public Transport {
 public:
  explicit TlsTransport(SSL* ssl, size_t record_size = 16384) : ssl_(ssl), record_size_(record_size) {}
  ~TlsTransport() override;
  // The client side of a connection to an upstream on fd: SNI `sni` (none when empty), the
  // certificate checked for `verify_name` (when the context verifies), the session in `slot`
  // resumed and a new one kept there (slot may be null). Null when OpenSSL cannot make one.
  static TlsTransport* client(SSL_CTX* ctx, int fd, const std::string& sni, const std::string& verify_name,
                              TlsSessionSlot* slot);
  // Why the handshake failed, from OpenSSL's error queue and the verification result (clears it).
  std::string failure() const;

  // Advances the server handshake: 1 when it is done, kIoWantRead / kIoWantWrite, or kIoError.
  ssize_t handshake();
  ssize_t read(int fd, char* buf, size_t len) override;
  ssize_t writev(int fd, const iovec* iov, int iovcnt, bool more) override;
  void shutdown_write(int fd) override;
  bool shared() const override { return false; }
  bool secure() const override { return true; }
  SSL* ssl() const { return ssl_; }
  void set_record_size(size_t n) { record_size_ = n; }
  // $ssl_protocol, $ssl_cipher, $ssl_server_name ("" without one), $ssl_session_reused.
  std::string_view protocol() const;
  std::string_view cipher() const;
  std::string_view server_name() const;
  bool session_reused() const;
  // $ssl_client_verify: SUCCESS, FAILED:reason or NONE; the certificate's subject and issuer
  // (RFC 2253) and serial ("" without one).
  std::string client_verify() const;
  std::string client_subject() const;
  std::string client_issuer() const;
  std::string client_serial() const;
  // Why a request on this connection may not be answered under `mode` (TlsVerify), or null.
  const char* client_certificate_problem(int mode) const;

 private:
  ssize_t result(int r);
  SSL* ssl_;
  bool shut_ = false;
  bool broken_ = false;  // a TLS or socket error: the session is not to be resumed
  size_t record_size_;
  // Dynamic record sizing: after a pause, the first bytes go in records that fit one TCP segment,
  // so that the client can use them as they arrive; then records of record_size_.
  size_t since_pause_ = 0;
  int64_t last_write_ms_ = 0;
  size_t pending_len_ = 0;  // the length of a write OpenSSL asked to have repeated
  // Plaintext gathered from several buffers into one record: a retry after "want write" must offer
  // OpenSSL the same bytes, which the caller's queue does, gathered here the same way again.
  std::unique_ptr<char[]> gather_;
};

// The first handler of a connection on a TLS listener: it reads the ClientHello, answers it, and
// when the handshake is complete gives the connection, now with a TLS transport, to next. The
// timeout covers the whole handshake. A client that speaks plain HTTP to the port is handed to
// plain (which answers it in HTTP and closes); anything else that is not TLS is closed.
class TlsHandshake final : public ConnectionHandler {
 public:
  using Next = void (*)(void* arg, Connection* c, std::string_view preread);
  struct Params {
    SSL_CTX* ctx;         // the address's default server's
    TlsSelect select;     // SNI
    void* select_arg;
    double timeout;
    Next next;
    Next plain;
    void* arg;
  };
  TlsHandshake(Connection* c, const Params& p) : c_(c), p_(p) {}
  void start();

  void on_readable() override { step(); }
  void on_writable() override { step(); }
  void on_timeout() override;

 private:
  void step();
  Connection* c_;
  Params p_;
  TlsTransport* tls_ = nullptr;  // owned by the connection once set
};

}  // namespace baton
