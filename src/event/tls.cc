#include "event/tls.h"

#include <errno.h>
#include <openssl/err.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>

#include "core/log.h"

namespace baton {

namespace {

// The largest plaintext of one TLS record.
constexpr size_t kRecordSize = 16384;

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
  if (ctx && ctx != SSL_get_SSL_CTX(ssl)) SSL_set_SSL_CTX(ssl, ctx);
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

}  // namespace

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
    if (SSL_CTX_use_certificate_chain_file(ctx, c.cert.c_str()) != 1) {
      *err = "cannot load certificate \"" + c.cert + "\": " + openssl_errors();
      return nullptr;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, c.key.c_str(), SSL_FILETYPE_PEM) != 1) {
      *err = "cannot load certificate key \"" + c.key + "\": " + openssl_errors();
      return nullptr;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
      *err = "certificate key \"" + c.key + "\" does not match certificate \"" + c.cert + "\"";
      ERR_clear_error();
      return nullptr;
    }
  }
  *bad_index = -1;
  SSL_CTX_set_tlsext_servername_callback(ctx, on_server_name);
  SSL_CTX_set_alpn_select_cb(ctx, on_alpn, nullptr);
  return t;
}

TlsContext::~TlsContext() { SSL_CTX_free(ctx_); }

// ---- the transport ----------------------------------------------------------------------------

TlsTransport::~TlsTransport() { SSL_free(ssl_); }

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
      return kIoError;
    default:
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
  // that much, gathered from smaller ones otherwise. A write that must be repeated is then offered
  // again at least the bytes it had (the caller keeps everything not yet taken), as OpenSSL requires.
  size_t total = 0;
  int i = 0;
  size_t off = 0;  // into iov[i]
  while (i < iovcnt) {
    size_t here = iov[i].iov_len - off;
    if (here == 0) {
      i++;
      off = 0;
      continue;
    }
    const char* data;
    size_t len;
    if (here >= kRecordSize || i + 1 == iovcnt) {
      data = static_cast<const char*>(iov[i].iov_base) + off;
      len = std::min(here, kRecordSize);
    } else {
      if (!gather_) gather_.reset(new char[kRecordSize]);
      len = 0;
      int j = i;
      size_t o = off;
      while (j < iovcnt && len < kRecordSize) {
        size_t take = std::min(iov[j].iov_len - o, kRecordSize - len);
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
      if (total > 0 && (res == kIoWantRead || res == kIoWantWrite)) return static_cast<ssize_t>(total);
      return res == 0 ? kIoError : res;
    }
    size_t done = static_cast<size_t>(r);
    total += done;
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
  // The SNI callback is done with the parameters; the connection goes on in HTTP.
  SSL_set_ex_data(tls_->ssl(), params_index(), nullptr);
  c_->want_write(false);
  c_->clear_deadline();
  p_.next(p_.arg, c_, {});
}

void TlsHandshake::on_timeout() {
  log_info("client %s timed out in the TLS handshake", c_->peer().to_string().c_str());
  c_->close();
}

}  // namespace baton
