// A tunnel that a worker of an older generation handed over: a client and an upstream that switched
// protocols through the proxy (a WebSocket, another `Upgrade`), with no HTTP left between them. Bytes
// read on one side are written to the other in order, with back-pressure: a side whose peer does not
// keep up is not read until that peer's queue has drained. It ends as the proxy's tunnel does: an end
// of stream on one side is passed on once what is queued for the other is out; an error, or silence
// both ways for its idle timeout, closes both.
//
// At the next reload or upgrade it is handed on again, to the generation after, with the bytes
// queued for either side; not once a side has ended its stream (it then finishes where it is).
#pragma once

#include <string>

#include "event/connection.h"
#include "http/http_handover.h"

namespace baton::http {

class HttpWorker;

// Starts carrying a handed-over tunnel (c.fds: the client, then the upstream). ls: the listener its
// client came to, null when this generation no longer has it.
void adopt_tunnel(HttpWorker* w, HandedConnection&& c, Listening* ls);

}  // namespace baton::http
