// HTTP/1 rules shared by the two directions: what a request from a client and a response from an
// upstream must look like, and the fields that belong to one connection rather than to the
// message. One implementation, so that the proxy holds an upstream to the same rules as a client.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "http/http_request.h"

namespace baton::http {

// Byte classes of a message head, looked up once per byte.
enum : uint8_t { kTchar = 1, kPlain = 2 };
extern const std::array<uint8_t, 256> kByteClass;

inline bool is_tchar(unsigned char c) { return kByteClass[c] & kTchar; }
// A field name is a token (RFC 9110 5.1); llhttp lets "Name : value" and "Na me: value" through.
bool is_token(std::string_view s);

// RFC 9112 asks for CRLF line endings and forbids obs-fold, and control characters have no place
// in a head. llhttp accepts some of these forms, so a head is checked once more as a whole: the
// bytes up to the end of its last field value.
bool head_is_clean(const char* p, const char* end);

// Transfer-Encoding: the only list accepted is "chunked" alone on one line, framed that way by
// the parser too. Anything else is where two readers of the same bytes could part ways.
bool transfer_encoding_is_chunked(const Header* headers, size_t count, bool parser_chunked);

// Fields that describe one connection, not the message (RFC 9110 7.6.1), never forwarded in either
// direction; nor is any field the Connection header names.
bool hop_by_hop(std::string_view name);
// Whether a Connection header value (a comma-separated list of field names) names `name`.
bool connection_names(std::string_view connection, std::string_view name);
// "timeout=5, max=100": a Keep-Alive field's parameters; those absent are left as they are.
void parse_keep_alive(std::string_view v, double* timeout, int64_t* max);

}  // namespace baton::http
