// The reverse proxy: the handler of a location with proxy_pass. It chooses a server of the group,
// takes a pooled connection or opens one, sends the request (head rewritten by the proxy's header
// rules, body streamed or buffered), reads the response and streams it to the client, with
// back-pressure both ways. A failure before the response has begun is retried on the next server
// when proxy_next_upstream allows it and the request is safe to send again; otherwise the client
// gets 502 (or 504 for a timeout).
#pragma once

namespace baton::http {

class HttpConnection;
struct ProxyPass;

// Starts proxying the request in progress of hc; the handler is registered with hc.
void start_proxy(HttpConnection* hc, const ProxyPass& pass);

}  // namespace baton::http
