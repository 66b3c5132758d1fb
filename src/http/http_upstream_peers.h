// The live state of one upstream group inside one worker: which server the next request goes to
// (one balancing method per file: round robin, least connections, client address hash, consistent
// hash of a key) and passive health (max_fails within fail_timeout takes a server out for
// fail_timeout; backup servers serve when every primary one is out).
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "http/http_upstream.h"
#include "os/unix/socket.h"

namespace baton::http {

struct PickInput {
  // Servers this request has tried already (index into the group's servers): the first 64 as bits,
  // any others in the vector (null: none).
  uint64_t tried_bits = 0;
  const std::vector<bool>* tried = nullptr;
  const PeerAddr* client = nullptr;  // ip_hash
  std::string_view key;              // hash: the evaluated key
};

class UpstreamPeers {
 public:
  explicit UpstreamPeers(const UpstreamGroup* group);
  ~UpstreamPeers();
  UpstreamPeers(const UpstreamPeers&) = delete;
  UpstreamPeers& operator=(const UpstreamPeers&) = delete;

  const UpstreamGroup* group() const { return group_; }
  size_t size() const;
  // The server for a request, or -1 when none may be tried (all down, out of service or tried):
  // the caller answers 502 at once.
  int pick(const PickInput& in, double now);
  // A request now uses / no longer uses a connection to server i (least_conn counts these).
  void acquired(int i);
  void released(int i);
  // Passive health: an attempt on server i failed (error, timeout, or a status proxy_next_upstream
  // names) / succeeded.
  void failed(int i, double now);
  void succeeded(int i, double now);
  bool available(int i, double now) const;

 private:
  struct State;
  const UpstreamGroup* group_;
  State* state_;
};

}  // namespace baton::http
