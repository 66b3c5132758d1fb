// Small pieces the proxy's black-box tests share (t/test_proxy_*.cc): the configuration of a baton
// in front of an [upstream app], and a watch on a process's resident memory that a sanitizer build
// does not blur. Header-only, on top of harness.h.
#pragma once

#include <stdio.h>
#include <sys/types.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "../harness.h"

namespace baton_test {

// The test binary is built with the same flags as the server: a sanitizer build of one is a
// sanitizer build of the other.
#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kSanitizerBuild = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr bool kSanitizerBuild = true;
#else
inline constexpr bool kSanitizerBuild = false;
#endif
#else
inline constexpr bool kSanitizerBuild = false;
#endif

// One baton (one worker unless told) in front of the given servers ("127.0.0.1:PORT [params]"
// lines of an [upstream app]), `location /` passing everything there.
inline std::string proxy_conf(const std::vector<std::string>& servers, std::string_view upstream_extra = "",
                              std::string_view location_extra = "", std::string_view http_extra = "",
                              int workers = 1) {
  std::string conf = "[upstream app]\n";
  for (const std::string& s : servers) conf += "server = " + s + "\n";
  conf += upstream_extra;
  conf +=
      "\n[server main]\n"
      "listen = 127.0.0.1:@PORT@\n"
      "root = html\n"
      "\n[location /]\n"
      "proxy_pass = http://app\n";
  conf += location_extra;
  return make_config(conf, http_extra, workers);
}

// VmRSS of a process in KiB (/proc/PID/status), -1 when it cannot be read.
inline long vm_rss_kib(pid_t pid) {
  std::string status = read_file("/proc/" + std::to_string(pid) + "/status");
  size_t at = status.find("\nVmRSS:");
  if (at == std::string::npos) return -1;
  long kib = -1;
  if (std::sscanf(status.c_str() + at + 7, "%ld", &kib) != 1) return -1;
  return kib;
}

// Samples a process's VmRSS every few milliseconds on a thread of its own, from construction until
// stop() (or destruction), and keeps the first and the highest sample.
class RssWatch {
 public:
  explicit RssWatch(pid_t pid) : pid_(pid), start_kib_(vm_rss_kib(pid)), peak_kib_(start_kib_) {
    thread_ = std::thread([this] {
      while (!stop_.load()) {
        long now = vm_rss_kib(pid_);
        if (now > peak_kib_.load()) peak_kib_.store(now);
        if (now >= 0) samples_++;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    });
  }
  ~RssWatch() { stop(); }
  RssWatch(const RssWatch&) = delete;
  RssWatch& operator=(const RssWatch&) = delete;

  void stop() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
  }
  long start_kib() const { return start_kib_; }
  long peak_kib() const { return peak_kib_.load(); }
  long growth_kib() const { return peak_kib() - start_kib_; }
  long samples() const { return samples_.load(); }
  std::string describe() const {
    return "VmRSS of pid " + std::to_string(pid_) + ": " + std::to_string(start_kib_) + " KiB at the start, " +
           std::to_string(peak_kib()) + " KiB at the peak (" + std::to_string(samples()) + " samples)";
  }

 private:
  pid_t pid_;
  long start_kib_;
  std::atomic<long> peak_kib_;
  std::atomic<long> samples_{0};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// In a sanitizer build freed memory sits in a quarantine (256 MB by default) before it is reused,
// which makes resident memory grow with the bytes that passed through, not with what is held. The
// server of a memory test gets a small quarantine so that its RSS still measures what it holds.
inline void limit_sanitizer_quarantine(BatonServer& s) {
  if (!kSanitizerBuild) return;
  const char* now = std::getenv("ASAN_OPTIONS");
  std::string opts = now && *now ? std::string(now) + ":" : std::string();
  s.set_env("ASAN_OPTIONS", opts + "quarantine_size_mb=4");
}

}  // namespace baton_test
