#include "event/tls.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/ocsp.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "core/log.h"

namespace baton {

namespace {

// The largest plaintext of one TLS record.
constexpr size_t kRecordSize = 16384;
// A record whose ciphertext fits one TCP segment of a 1500-byte path (TLS and TCP/IP overhead
// with options taken off), and how much goes in such records after a pause: about an initial
// congestion window.
constexpr size_t kSmallRecord = 1369;
constexpr size_t kSmallRecordBytes = 14 * 1024;
constexpr int64_t kPauseMs = 1000;

int64_t now_ms() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}


std::string openssl_errors() {
  std::string out;
  unsigned long e;
  char buf[256];
  while ((e = ERR_get_error()) != 0) {
    ERR_error_string_n(e, buf, sizeof(buf));
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? std::string("unknown error") : out;
}

// The index of the connection's TlsHandshake::Params in each SSL object, for the SNI callback.
int params_index() {
  static int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

int on_server_name(SSL* ssl, int* /*alert*/, void* /*arg*/) {
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  auto* p = static_cast<const TlsHandshake::Params*>(SSL_get_ex_data(ssl, params_index()));
  if (!name || !p || !p->select) return SSL_TLSEXT_ERR_OK;
  SSL_CTX* ctx = p->select(p->select_arg, name);
  if (ctx && ctx != SSL_get_SSL_CTX(ssl)) {
    SSL_set_SSL_CTX(ssl, ctx);
    // The certificate comes with the new context, the client-certificate policy does not: taken over
    // by hand, so that the server named asks for (or does not ask for) a client certificate.
    SSL_set_verify(ssl, SSL_CTX_get_verify_mode(ctx), SSL_CTX_get_verify_callback(ctx));
    SSL_set_verify_depth(ssl, SSL_CTX_get_verify_depth(ctx));
    STACK_OF(X509_NAME)* cas = SSL_CTX_get_client_CA_list(ctx);
    SSL_set_client_CA_list(ssl, cas ? SSL_dup_CA_list(cas) : nullptr);
  }
  return SSL_TLSEXT_ERR_OK;
}

// ALPN: HTTP/1.1 is what this server speaks (h2 will join it). A client that offers only other
// protocols gets no ALPN answer and may carry on or give up, as RFC 7301 leaves it to it.
int on_alpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in, unsigned int inlen,
            void*) {
  static const unsigned char kOurs[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(&selected, outlen, kOurs, sizeof(kOurs), in, inlen) != OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_NOACK;
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

// ---- session tickets ----

unsigned char g_ticket_secret[kTicketSecretSize];
bool g_have_ticket_secret = false;
constexpr long kTicketPeriod = 3600;  // seconds a derived key seals new tickets

int context_index() {
  static int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

// OCSP stapling: the server's configured response, to a client that asked for one (the callback
// runs only then).
int on_status_request(SSL* ssl, void*) {
  auto* tc = static_cast<const TlsContext*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), context_index()));
  if (!tc || tc->ocsp_response().empty()) return SSL_TLSEXT_ERR_NOACK;
  const std::string& der = tc->ocsp_response();
  auto* copy = static_cast<unsigned char*>(OPENSSL_malloc(der.size()));
  if (!copy) return SSL_TLSEXT_ERR_NOACK;
  memcpy(copy, der.data(), der.size());
  SSL_set_tlsext_status_ocsp_resp(ssl, copy, static_cast<long>(der.size()));  // OpenSSL frees it
  return SSL_TLSEXT_ERR_OK;
}

// The key of `period`: three HMAC-SHA256 of the secret, one per part.
void derive_ticket_key(long period, TlsTicketKey* k) {
  if (!g_have_ticket_secret) tls_make_ticket_secret();  // a process on its own (no master made one)
  auto part = [period](const char* label, unsigned char* out, size_t n) {
    unsigned char msg[64];
    size_t l = strlen(label);
    memcpy(msg, label, l);
    for (int i = 0; i < 8; i++) msg[l + static_cast<size_t>(i)] = static_cast<unsigned char>(static_cast<uint64_t>(period) >> (56 - 8 * i));
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    HMAC(EVP_sha256(), g_ticket_secret, kTicketSecretSize, msg, l + 8, md, &md_len);
    memcpy(out, md, n);
  };
  part("baton ticket name", k->name, sizeof(k->name));
  part("baton ticket hmac", k->hmac, sizeof(k->hmac));
  part("baton ticket aes", k->aes, sizeof(k->aes));
  k->key_len = 32;
}

bool init_ticket_mac(EVP_MAC_CTX* mctx, const TlsTicketKey& k) {
  OSSL_PARAM params[2];
  params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, const_cast<char*>("SHA256"), 0);
  params[1] = OSSL_PARAM_construct_end();
  return EVP_MAC_init(mctx, k.hmac, k.key_len, params) == 1;
}

const EVP_CIPHER* ticket_cipher(const TlsTicketKey& k) { return k.key_len == 16 ? EVP_aes_128_cbc() : EVP_aes_256_cbc(); }

// OpenSSL asks for a key to seal a new ticket (enc 1) or for the key a ticket names (enc 0):
// 1 for the current key, 2 for an older one (the ticket is good, and a new one is sent), 0 for none.
int on_ticket_key(SSL* ssl, unsigned char name[16], unsigned char iv[EVP_MAX_IV_LENGTH], EVP_CIPHER_CTX* cctx,
                  EVP_MAC_CTX* mctx, int enc) {
  auto* tc = static_cast<const TlsContext*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), context_index()));
  const std::vector<TlsTicketKey>* files = tc ? &tc->ticket_keys() : nullptr;
  TlsTicketKey derived[3];
  const TlsTicketKey* keys;
  size_t count;
  if (files && !files->empty()) {
    keys = files->data();
    count = files->size();
  } else {
    long period = static_cast<long>(time(nullptr)) / kTicketPeriod;
    for (int i = 0; i < 3; i++) derive_ticket_key(period - i, &derived[i]);
    keys = derived;
    count = 3;
  }
  if (enc) {
    const TlsTicketKey& k = keys[0];
    memcpy(name, k.name, 16);
    if (RAND_bytes(iv, EVP_CIPHER_get_iv_length(ticket_cipher(k))) != 1) return -1;
    if (EVP_EncryptInit_ex(cctx, ticket_cipher(k), nullptr, k.aes, iv) != 1 || !init_ticket_mac(mctx, k)) return -1;
    return 1;
  }
  for (size_t i = 0; i < count; i++) {
    const TlsTicketKey& k = keys[i];
    if (memcmp(name, k.name, 16) != 0) continue;
    if (EVP_DecryptInit_ex(cctx, ticket_cipher(k), nullptr, k.aes, iv) != 1 || !init_ticket_mac(mctx, k)) return -1;
    return i == 0 ? 1 : 2;
  }
  return 0;  // unknown (or expired) key: a full handshake
}

// The slot a client connection keeps its session in: where a new session (a TLS 1.3 ticket arrives
// after the handshake) goes.
int slot_index() {
  static int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

int on_new_client_session(SSL* ssl, SSL_SESSION* sess) {
  auto* slot = static_cast<TlsSessionSlot*>(SSL_get_ex_data(ssl, slot_index()));
  if (!slot) return 0;
  slot->set(sess);
  return 1;  // the slot keeps the reference
}

// A client certificate that does not verify does not fail the handshake: the request is refused
// in HTTP (400), where the client can be told, as nginx does.
int accept_any_certificate(int, X509_STORE_CTX*) { return 1; }

std::string name_text(const X509_NAME* name) {
  if (!name) return "";
  BIO* b = BIO_new(BIO_s_mem());
  if (!b) return "";
  X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253);
  char* data = nullptr;
  long n = BIO_get_mem_data(b, &data);
  std::string out(data, n > 0 ? static_cast<size_t>(n) : 0);
  BIO_free(b);
  return out;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// A certificate chain and its key, checked against each other.
bool use_certificate(SSL_CTX* ctx, const std::string& cert, const std::string& key, std::string* err) {
  if (SSL_CTX_use_certificate_chain_file(ctx, cert.c_str()) != 1) {
    *err = "cannot load certificate \"" + cert + "\": " + openssl_errors();
    return false;
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, key.c_str(), SSL_FILETYPE_PEM) != 1) {
    *err = "cannot load certificate key \"" + key + "\": " + openssl_errors();
    return false;
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    *err = "certificate key \"" + key + "\" does not match certificate \"" + cert + "\"";
    ERR_clear_error();
    return false;
  }
  return true;
}

}  // namespace

std::string tls_library_version() {
  std::string built = OPENSSL_VERSION_TEXT;
  std::string running = OpenSSL_version(OPENSSL_VERSION);
  return running == built ? built : built + " (running with " + running + ")";
}

void tls_make_ticket_secret() {
  if (RAND_bytes(g_ticket_secret, sizeof(g_ticket_secret)) != 1) {
    // Without randomness no ticket can be sealed safely: a key nobody knows is made per process from
    // what there is, and tickets only fail to resume across workers.
    for (size_t i = 0; i < sizeof(g_ticket_secret); i++)
      g_ticket_secret[i] = static_cast<unsigned char>(getpid() * 31 + static_cast<int>(i) * 131 + time(nullptr));
  }
  g_have_ticket_secret = true;
}

void tls_set_ticket_secret(const unsigned char* secret) {
  memcpy(g_ticket_secret, secret, kTicketSecretSize);
  g_have_ticket_secret = true;
}

std::string tls_ticket_secret_hex() {
  if (!g_have_ticket_secret) return "";
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : g_ticket_secret) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 15]);
  }
  return out;
}

bool tls_set_ticket_secret_hex(std::string_view hex) {
  if (hex.size() != 2 * kTicketSecretSize) return false;
  unsigned char secret[kTicketSecretSize];
  for (size_t i = 0; i < kTicketSecretSize; i++) {
    int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    secret[i] = static_cast<unsigned char>(hi * 16 + lo);
  }
  tls_set_ticket_secret(secret);
  return true;
}

std::string tls_read_ticket_key(const std::string& path, TlsTicketKey* out) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "cannot open ticket key file \"" + path + "\" (" + strerror(errno) + ")";
  unsigned char buf[81];
  ssize_t n = ::read(fd, buf, sizeof(buf));
  ::close(fd);
  if (n != 48 && n != 80)
    return "ticket key file \"" + path + "\" must hold 48 or 80 bytes (as `openssl rand 80 > FILE` makes), not " +
           std::to_string(n < 0 ? 0 : n);
  size_t k = n == 48 ? 16 : 32;
  memcpy(out->name, buf, 16);
  memcpy(out->hmac, buf + 16, k);
  memcpy(out->aes, buf + 16 + k, k);
  out->key_len = k;
  return "";
}

std::unique_ptr<TlsContext> TlsContext::create_server(const TlsServerOptions& o, std::string* err, int* bad_index) {
  *bad_index = -1;
  ERR_clear_error();
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (!ctx) {
    *err = "SSL_CTX_new() failed: " + openssl_errors();
    return nullptr;
  }
  std::unique_ptr<TlsContext> t(new TlsContext(ctx));
  SSL_CTX_set_min_proto_version(ctx, o.min_version);
  SSL_CTX_set_max_proto_version(ctx, o.max_version);
  long opts = SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION;
  if (o.prefer_server_ciphers) opts |= SSL_OP_CIPHER_SERVER_PREFERENCE;
  SSL_CTX_set_options(ctx, opts);
  // Writes may be partial, and a write that must be repeated may come from another buffer with the
  // same bytes (the output queue's copy of what the first attempt offered).
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
  if (!o.ciphers.empty() && SSL_CTX_set_cipher_list(ctx, o.ciphers.c_str()) != 1) {
    *err = "invalid ssl_ciphers \"" + o.ciphers + "\": " + openssl_errors();
    return nullptr;
  }
  if (!o.conf_commands.empty()) {
    SSL_CONF_CTX* cc = SSL_CONF_CTX_new();
    SSL_CONF_CTX_set_flags(cc, SSL_CONF_FLAG_FILE | SSL_CONF_FLAG_SERVER | SSL_CONF_FLAG_CERTIFICATE |
                                   SSL_CONF_FLAG_SHOW_ERRORS);
    SSL_CONF_CTX_set_ssl_ctx(cc, ctx);
    for (const std::string& c : o.conf_commands) {
      size_t sp = c.find_first_of(" \t");
      std::string name = c.substr(0, sp);
      std::string value = sp == std::string::npos ? std::string() : c.substr(c.find_first_not_of(" \t", sp));
      if (SSL_CONF_cmd(cc, name.c_str(), value.c_str()) <= 0) {
        *err = "ssl_conf_command \"" + c + "\" failed: " + openssl_errors();
        SSL_CONF_CTX_free(cc);
        return nullptr;
      }
    }
    SSL_CONF_CTX_finish(cc);
    SSL_CONF_CTX_free(cc);
  }
  for (size_t i = 0; i < o.certificates.size(); i++) {
    const TlsCertificate& c = o.certificates[i];
    *bad_index = static_cast<int>(i);
    if (!use_certificate(ctx, c.cert, c.key, err)) return nullptr;
  }
  *bad_index = -1;
  // Sessions: resumable for session_timeout, from each worker's cache (unless it is off) and from
  // tickets (unless they are off) that any worker, of this generation or a later one, can open.
  SSL_CTX_set_ex_data(ctx, context_index(), t.get());
  t->ticket_keys_ = o.ticket_keys;
  SSL_CTX_set_timeout(ctx, o.session_timeout);
  static const unsigned char kSessionContext[] = "baton";
  SSL_CTX_set_session_id_context(ctx, kSessionContext, sizeof(kSessionContext) - 1);
  if (o.session_cache == 0) {
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  } else {
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    if (o.session_cache > 0) SSL_CTX_sess_set_cache_size(ctx, o.session_cache);
  }
  if (o.tickets) {
    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, on_ticket_key);
  } else {
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
  }
  if (o.verify_client != kVerifyOff) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, accept_any_certificate);
    SSL_CTX_set_verify_depth(ctx, o.verify_depth);
    for (const std::string* file : {&o.client_certificate, &o.trusted_certificate}) {
      if (file->empty()) continue;
      if (SSL_CTX_load_verify_locations(ctx, file->c_str(), nullptr) != 1) {
        *err = "cannot load CA certificates \"" + *file + "\": " + openssl_errors();
        return nullptr;
      }
    }
    if (!o.client_certificate.empty()) {
      STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(o.client_certificate.c_str());
      if (!names) {
        *err = "cannot load CA certificates \"" + o.client_certificate + "\": " + openssl_errors();
        return nullptr;
      }
      SSL_CTX_set_client_CA_list(ctx, names);
    }
  }
  if (!o.stapling_file.empty()) {
    std::string der;
    int fd = ::open(o.stapling_file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      *err = "cannot open OCSP response \"" + o.stapling_file + "\" (" + strerror(errno) + ")";
      return nullptr;
    }
    char buf[8192];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof(buf))) > 0 && der.size() < (1u << 20)) der.append(buf, static_cast<size_t>(n));
    ::close(fd);
    // Checked now, not by the first client: a DER OCSP response that says "successful".
    const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
    OCSP_RESPONSE* resp = d2i_OCSP_RESPONSE(nullptr, &p, static_cast<long>(der.size()));
    int status = resp ? OCSP_response_status(resp) : -1;
    OCSP_RESPONSE_free(resp);
    if (!resp || status != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
      ERR_clear_error();
      *err = "\"" + o.stapling_file + "\" is not a successful OCSP response in DER form";
      return nullptr;
    }
    t->ocsp_ = std::move(der);
    SSL_CTX_set_tlsext_status_cb(ctx, on_status_request);
  }
  t->record_size_ = o.record_size;
  SSL_CTX_set_tlsext_servername_callback(ctx, on_server_name);
  SSL_CTX_set_alpn_select_cb(ctx, on_alpn, nullptr);
  return t;
}

std::unique_ptr<TlsContext> TlsContext::create_client(const TlsClientOptions& o, std::string* err) {
  ERR_clear_error();
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (!ctx) {
    *err = "SSL_CTX_new() failed: " + openssl_errors();
    return nullptr;
  }
  std::unique_ptr<TlsContext> t(new TlsContext(ctx));
  SSL_CTX_set_min_proto_version(ctx, o.min_version);
  SSL_CTX_set_max_proto_version(ctx, o.max_version);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
  if (!o.ciphers.empty() && SSL_CTX_set_cipher_list(ctx, o.ciphers.c_str()) != 1) {
    *err = "invalid proxy_ssl_ciphers \"" + o.ciphers + "\": " + openssl_errors();
    return nullptr;
  }
  if (o.verify) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    SSL_CTX_set_verify_depth(ctx, o.verify_depth);
    if (SSL_CTX_load_verify_locations(ctx, o.trusted_certificate.c_str(), nullptr) != 1) {
      *err = "cannot load CA certificates \"" + o.trusted_certificate + "\": " + openssl_errors();
      return nullptr;
    }
  }
  if (!o.certificate.empty() && !use_certificate(ctx, o.certificate, o.key, err)) return nullptr;
  // Sessions are kept by the connections' slots, not in OpenSSL's cache.
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_new_cb(ctx, on_new_client_session);
  return t;
}

TlsContext::~TlsContext() { SSL_CTX_free(ctx_); }

TlsSessionSlot::~TlsSessionSlot() {
  if (session_) SSL_SESSION_free(session_);
}

void TlsSessionSlot::set(SSL_SESSION* s) {
  if (session_) SSL_SESSION_free(session_);
  session_ = s;
}

// ---- the transport ----------------------------------------------------------------------------

std::string_view TlsTransport::protocol() const { return SSL_get_version(ssl_); }

std::string_view TlsTransport::cipher() const {
  const char* c = SSL_get_cipher_name(ssl_);
  return c ? c : "";
}

std::string_view TlsTransport::server_name() const {
  const char* n = SSL_get_servername(ssl_, TLSEXT_NAMETYPE_host_name);
  return n ? n : "";
}

bool TlsTransport::session_reused() const { return SSL_session_reused(ssl_) == 1; }

std::string TlsTransport::client_verify() const {
  if (!SSL_get0_peer_certificate(ssl_)) return "NONE";
  long r = SSL_get_verify_result(ssl_);
  if (r == X509_V_OK) return "SUCCESS";
  return std::string("FAILED:") + X509_verify_cert_error_string(r);
}

std::string TlsTransport::client_subject() const {
  X509* cert = SSL_get0_peer_certificate(ssl_);
  return cert ? name_text(X509_get_subject_name(cert)) : "";
}

std::string TlsTransport::client_issuer() const {
  X509* cert = SSL_get0_peer_certificate(ssl_);
  return cert ? name_text(X509_get_issuer_name(cert)) : "";
}

std::string TlsTransport::client_serial() const {
  X509* cert = SSL_get0_peer_certificate(ssl_);
  if (!cert) return "";
  BIGNUM* bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr);
  if (!bn) return "";
  char* hex = BN_bn2hex(bn);
  std::string out = hex ? hex : "";
  OPENSSL_free(hex);
  BN_free(bn);
  return out;
}

const char* TlsTransport::client_certificate_problem(int mode) const {
  if (mode == kVerifyOff) return nullptr;
  if (!SSL_get0_peer_certificate(ssl_)) return mode == kVerifyOn ? "sent no required client certificate" : nullptr;
  if (mode != kVerifyOptionalNoCa && SSL_get_verify_result(ssl_) != X509_V_OK) return "sent a client certificate that does not verify";
  return nullptr;
}

TlsTransport::~TlsTransport() {
  // A connection that ends without a TLS error ends "cleanly" for OpenSSL, which otherwise takes
  // its session for a bad one and stops it (and the client's kept copy) from being resumed.
  if (!broken_ && SSL_is_init_finished(ssl_)) {
    SSL_set_quiet_shutdown(ssl_, 1);
    SSL_shutdown(ssl_);
  }
  SSL_free(ssl_);
}

TlsTransport* TlsTransport::client(SSL_CTX* ctx, int fd, const std::string& sni, const std::string& verify_name,
                                   TlsSessionSlot* slot) {
  ERR_clear_error();
  SSL* ssl = SSL_new(ctx);
  if (!ssl) return nullptr;
  SSL_set_fd(ssl, fd);
  SSL_set_connect_state(ssl);
  if (!sni.empty()) SSL_set_tlsext_host_name(ssl, sni.c_str());
  if (SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER) {
    // The certificate must name the upstream as configured (proxy_ssl_name): a name, or an address.
    if (!verify_name.empty()) {
      X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
      X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      if (X509_VERIFY_PARAM_set1_ip_asc(param, verify_name.c_str()) != 1) {
        ERR_clear_error();
        SSL_set1_host(ssl, verify_name.c_str());
      }
    }
  }
  if (slot) {
    SSL_set_ex_data(ssl, slot_index(), slot);
    if (slot->get()) SSL_set_session(ssl, slot->get());
  }
  return new TlsTransport(ssl);
}

std::string TlsTransport::failure() const {
  long v = SSL_get_verify_result(ssl_);
  std::string out;
  if (v != X509_V_OK) out = std::string("certificate verify error: (") + std::to_string(v) + ":" + X509_verify_cert_error_string(v) + ")";
  std::string queued = ERR_peek_error() ? openssl_errors() : "";
  if (!queued.empty()) out += (out.empty() ? "" : "; ") + queued;
  if (out.empty()) out = errno ? strerror(errno) : "the peer closed the connection";
  return out;
}

ssize_t TlsTransport::result(int r) {
  switch (SSL_get_error(ssl_, r)) {
    case SSL_ERROR_WANT_READ:
      return kIoWantRead;
    case SSL_ERROR_WANT_WRITE:
      return kIoWantWrite;
    case SSL_ERROR_ZERO_RETURN:
      return 0;  // the peer's close_notify: the end of its data
    case SSL_ERROR_SYSCALL:
      // A TCP end without close_notify reads as an end too (most clients close that way); a socket
      // error keeps its errno.
      ERR_clear_error();
      if (errno == 0) return 0;
      broken_ = true;
      return kIoError;
    default:
      broken_ = true;
      // OpenSSL's error queue says why; it is read by whoever logs the failure, and cleared
      // before the next call.
      errno = EPROTO;
      return kIoError;
  }
}

ssize_t TlsTransport::handshake() {
  ERR_clear_error();
  errno = 0;
  int r = SSL_do_handshake(ssl_);
  if (r == 1) return 1;
  ssize_t res = result(r);
  return res == 0 ? kIoError : res;
}

ssize_t TlsTransport::read(int, char* buf, size_t len) {
  ERR_clear_error();
  errno = 0;
  int r = SSL_read(ssl_, buf, static_cast<int>(std::min<size_t>(len, INT32_MAX)));
  if (r > 0) return r;
  return result(r);
}

ssize_t TlsTransport::writev(int, const iovec* iov, int iovcnt, bool) {
  // One record at a time, of at most kRecordSize bytes: taken straight from a buffer that holds
  // that much, gathered from smaller ones otherwise. A write that must be repeated is offered again
  // at least the bytes it had (the caller keeps everything not yet taken, and the record is made no
  // smaller than pending_len_), as OpenSSL requires.
  size_t total = 0;
  int i = 0;
  size_t off = 0;  // into iov[i]
  int64_t now = now_ms();
  if (now - last_write_ms_ >= kPauseMs && pending_len_ == 0) since_pause_ = 0;
  last_write_ms_ = now;
  while (i < iovcnt) {
    // The record size: small at first after a pause, then the configured one; never less than a
    // write that is being repeated offered.
    size_t record = since_pause_ < kSmallRecordBytes ? kSmallRecord : record_size_;
    if (pending_len_ > record) record = pending_len_;
    size_t here = iov[i].iov_len - off;
    if (here == 0) {
      i++;
      off = 0;
      continue;
    }
    const char* data;
    size_t len;
    if (here >= record || i + 1 == iovcnt) {
      data = static_cast<const char*>(iov[i].iov_base) + off;
      len = std::min(here, record);
    } else {
      if (!gather_) gather_.reset(new char[kRecordSize]);
      len = 0;
      int j = i;
      size_t o = off;
      while (j < iovcnt && len < record) {
        size_t take = std::min(iov[j].iov_len - o, record - len);
        memcpy(gather_.get() + len, static_cast<const char*>(iov[j].iov_base) + o, take);
        len += take;
        o += take;
        if (o == iov[j].iov_len) {
          j++;
          o = 0;
        }
      }
      data = gather_.get();
    }
    ERR_clear_error();
    errno = 0;
    int r = SSL_write(ssl_, data, static_cast<int>(len));
    if (r <= 0) {
      ssize_t res = result(r);
      if (res == kIoWantRead || res == kIoWantWrite) pending_len_ = len;
      if (total > 0 && (res == kIoWantRead || res == kIoWantWrite)) return static_cast<ssize_t>(total);
      return res == 0 ? kIoError : res;
    }
    size_t done = static_cast<size_t>(r);
    pending_len_ = 0;
    total += done;
    since_pause_ += done;
    while (done > 0) {
      size_t step = std::min(done, iov[i].iov_len - off);
      off += step;
      done -= step;
      if (off == iov[i].iov_len) {
        i++;
        off = 0;
      }
    }
    if (static_cast<size_t>(r) < len) break;
  }
  return static_cast<ssize_t>(total);
}

void TlsTransport::shutdown_write(int fd) {
  // close_notify, then the TCP half-close: the client learns that the data ended here, not that
  // the connection was cut.
  if (!shut_) {
    shut_ = true;
    ERR_clear_error();
    SSL_shutdown(ssl_);
    ERR_clear_error();
  }
  ::shutdown(fd, SHUT_WR);
}

// ---- the handshake ----------------------------------------------------------------------------

void TlsHandshake::start() {
  c_->set_deadline(p_.timeout);
  step();
  if (!c_->closed() && c_->handler() == this && !c_->wants_read()) c_->want_read(true);
}

void TlsHandshake::step() {
  if (!tls_) {
    // The first byte says what the client speaks: 0x16 starts a TLS handshake record.
    unsigned char first;
    ssize_t n;
    do {
      n = ::recv(c_->fd(), &first, 1, MSG_PEEK);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      c_->want_read(true);
      return;
    }
    if (n <= 0) {
      c_->close();
      return;
    }
    if (first != 0x16) {
      if (first >= 'A' && first <= 'Z' && p_.plain) {
        // A request in plain HTTP (the client forgot https://): it is told so in HTTP.
        c_->clear_deadline();
        p_.plain(p_.arg, c_, {});
        return;
      }
      log_info("client %s sent something other than a TLS handshake, closing", c_->peer().to_string().c_str());
      c_->close();
      return;
    }
    SSL* ssl = SSL_new(p_.ctx);
    if (!ssl) {
      log_error("SSL_new() failed: %s", openssl_errors().c_str());
      c_->close();
      return;
    }
    SSL_set_fd(ssl, c_->fd());
    SSL_set_accept_state(ssl);
    SSL_set_ex_data(ssl, params_index(), &p_);
    tls_ = new TlsTransport(ssl);
    c_->set_transport(tls_);
  }
  ssize_t r = tls_->handshake();
  if (r == kIoWantRead) {
    c_->want_write(false);
    c_->want_read(true);
    return;
  }
  if (r == kIoWantWrite) {
    c_->want_read(false);
    c_->want_write(true);
    return;
  }
  if (r != 1) {
    log_info("TLS handshake with %s failed: %s", c_->peer().to_string().c_str(),
             errno == EPROTO ? openssl_errors().c_str() : strerror(errno));
    ERR_clear_error();
    c_->close();
    return;
  }
  // The SNI callback is done with the parameters; the connection goes on in HTTP, with the record
  // size of the server the handshake ended with.
  SSL_set_ex_data(tls_->ssl(), params_index(), nullptr);
  if (auto* tc = static_cast<const TlsContext*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(tls_->ssl()), context_index())))
    tls_->set_record_size(tc->record_size());
  c_->want_write(false);
  c_->clear_deadline();
  p_.next(p_.arg, c_, {});
}

void TlsHandshake::on_timeout() {
  log_info("client %s timed out in the TLS handshake", c_->peer().to_string().c_str());
  c_->close();
}

}  // namespace baton
