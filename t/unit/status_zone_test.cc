#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "core/status_zone.h"
#include "http/http_status.h"
#include "os/unix/shm.h"

using namespace baton;

class StatusZoneTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string err;
    mem = SharedMemory::create("test-status", StatusZone::size(), &err);
    ASSERT_TRUE(mem) << err;
    ASSERT_TRUE(StatusZone::format(mem->base(), mem->size(), status::kKind));
    zone = StatusZone(mem->base(), mem->size());
    ASSERT_TRUE(zone.valid());
  }
  StatusSnapshot read() {
    StatusSnapshot s;
    zone.read(&s);
    return s;
  }
  std::unique_ptr<SharedMemory> mem;
  StatusZone zone;
};

TEST_F(StatusZoneTest, ChecksItsLayout) {
  EXPECT_TRUE(StatusZone::check(mem->base(), mem->size(), status::kKind));
  EXPECT_FALSE(StatusZone::check(mem->base(), mem->size(), status::kKind + 1)) << "another kind";
  EXPECT_FALSE(StatusZone::check(mem->base(), mem->size() - 4096, status::kKind)) << "another size";
  std::string err;
  auto blank = SharedMemory::create("blank", StatusZone::size(), &err);
  ASSERT_TRUE(blank);
  EXPECT_FALSE(StatusZone::check(blank->base(), blank->size(), status::kKind)) << "never formatted";
  EXPECT_GT(read().started, 0);
}

TEST_F(StatusZoneTest, NamesAreRegisteredOnceAndBounded) {
  EXPECT_EQ(zone.server_index("a"), 0u);
  EXPECT_EQ(zone.server_index("b"), 1u);
  EXPECT_EQ(zone.server_index("a"), 0u);
  EXPECT_EQ(zone.upstream_index("a"), 0u) << "upstreams have names of their own";
  std::string long_name(200, 'x');
  uint32_t i = zone.server_index(long_name);
  EXPECT_EQ(zone.server_index(long_name), i);
  for (uint32_t n = 0; n < status::kServers + 10; n++) zone.server_index("s" + std::to_string(n));
  EXPECT_EQ(zone.server_index("one too many"), status::kServers - 1);
  StatusSnapshot s = read();
  ASSERT_EQ(s.servers.size(), status::kServers);
  EXPECT_EQ(s.servers.back().name, "(other)");
  EXPECT_EQ(s.servers[i].name, std::string(status::kNameMax - 1, 'x'));
}

// A worker's counts outlive it: released, they go to the retired totals; its gauges go.
TEST_F(StatusZoneTest, ReleasedSlotsKeepTheirCounters) {
  uint32_t srv = zone.server_index("main");
  uint32_t up = zone.upstream_index("app");
  bool shared = true;
  StatSlot* a = zone.claim(100, &shared);
  EXPECT_FALSE(shared);
  StatSlot* b = zone.claim(200, &shared);
  EXPECT_NE(a, b);
  StatusWriter wa, wb;
  wa.attach(a, false);
  wb.attach(b, false);
  wa.accepted();
  wa.client(1);
  wa.request_begun();
  wa.state(StatusWriter::State::kNone, StatusWriter::State::kWriting);
  wa.request_done(srv, 200, 0.002);
  wa.bytes(srv, 100, 1000);
  wb.accepted();
  wb.client(1);
  wb.request_begun();
  wb.request_done(srv, 404, 0.3);
  wb.upstream_request(up);
  wb.upstream_attempt(up);
  wb.upstream_response(up, 503, 0.25);
  wb.upstream_failure(up, UpstreamFailure::kTimeout);
  StatusSnapshot s = read();
  EXPECT_EQ(s.accepted, 2u);
  EXPECT_EQ(s.requests, 2u);
  EXPECT_EQ(s.active, 2);
  EXPECT_EQ(s.writing, 1);
  EXPECT_EQ(s.servers[srv].requests[2], 1u);
  EXPECT_EQ(s.servers[srv].requests[4], 1u);
  EXPECT_EQ(s.servers[srv].time[0], 1u);                     // 2 ms: the first bucket
  EXPECT_EQ(s.servers[srv].time[status::time_bucket(0.3)], 1u);  // 300 ms: (0.25, 0.5]
  EXPECT_EQ(status::time_bucket(0.3), 6u);
  EXPECT_EQ(status::time_bucket(100), status::kTimeBuckets - 1);
  EXPECT_EQ(s.servers[srv].time_us, 302000u);
  EXPECT_EQ(s.servers[srv].bytes_received, 100u);
  EXPECT_EQ(s.servers[srv].bytes_sent, 1000u);
  EXPECT_EQ(s.upstreams[up].responses[5], 1u);
  EXPECT_EQ(s.upstreams[up].failures[static_cast<size_t>(UpstreamFailure::kTimeout)], 1u);

  zone.release(100);
  StatusSnapshot after = read();
  EXPECT_EQ(after.accepted, 2u) << "counters never go backwards";
  EXPECT_EQ(after.requests, 2u);
  EXPECT_EQ(after.servers[srv].requests[2], 1u);
  EXPECT_EQ(after.servers[srv].bytes_sent, 1000u);
  EXPECT_EQ(after.active, 1) << "the gauges of a process that is gone are gone";
  EXPECT_EQ(after.writing, 0);

  // The slot is free again, zeroed; its next owner counts from there.
  StatSlot* c = zone.claim(300, &shared);
  EXPECT_EQ(c, a);
  StatusWriter wc;
  wc.attach(c, false);
  wc.request_begun();
  EXPECT_EQ(read().requests, 3u);
  zone.release(300);
  zone.release(200);
  StatusSnapshot last = read();
  EXPECT_EQ(last.requests, 3u);
  EXPECT_EQ(last.active, 0);
  EXPECT_EQ(last.upstreams[up].attempts, 1u);
}

// A slot whose process is gone without being released (a pid seen again, or swept).
TEST_F(StatusZoneTest, StaleSlotsAreFolded) {
  bool shared;
  StatusWriter w;
  w.attach(zone.claim(4242, &shared), false);
  w.request_begun();
  w.client(1);
  // The same pid again (the first process is gone): its old counts are kept, once.
  w.attach(zone.claim(4242, &shared), false);
  EXPECT_EQ(read().requests, 1u);
  EXPECT_EQ(read().active, 0);
  // A child that exits: the sweep finds it gone.
  pid_t child = fork();
  if (child == 0) _exit(0);
  ASSERT_GT(child, 0);
  int st;
  ASSERT_EQ(waitpid(child, &st, 0), child);
  w.attach(zone.claim(child, &shared), false);
  w.request_begun();
  w.client(1);
  EXPECT_EQ(read().active, 1);
  zone.sweep();
  EXPECT_EQ(read().active, 0);
  EXPECT_EQ(read().requests, 2u);
}

TEST_F(StatusZoneTest, BeyondTheSlotsWorkersShareOne) {
  bool shared = false;
  for (uint32_t i = 0; i < status::kSlots; i++) {
    zone.claim(static_cast<pid_t>(1000 + i), &shared);
    ASSERT_FALSE(shared);
  }
  StatSlot* extra = zone.claim(99999, &shared);
  EXPECT_TRUE(shared);
  StatusWriter w;
  w.attach(extra, true);
  w.request_begun();
  w.request_begun();
  EXPECT_EQ(read().requests, 2u);
  zone.release(1000);
  EXPECT_FALSE(zone.claim(5, &shared) == extra);
  EXPECT_FALSE(shared);
}

// Slots are written by another process: what a child counts is read here.
TEST_F(StatusZoneTest, CountsAcrossProcesses) {
  pid_t child = fork();
  if (child == 0) {
    bool shared = false;
    StatusWriter w;
    StatSlot* slot = zone.claim(getpid(), &shared);  // before `shared` is read: argument order is unspecified
    w.attach(slot, shared);
    for (int i = 0; i < 1000; i++) w.request_begun();
    _exit(0);
  }
  ASSERT_GT(child, 0);
  int st;
  ASSERT_EQ(waitpid(child, &st, 0), child);
  EXPECT_EQ(read().requests, 1000u);
  zone.release(child);
  EXPECT_EQ(read().requests, 1000u);
}

TEST(StatusFormat, StubStatusIsNginxsText) {
  StatusSnapshot s;
  s.active = 291;
  s.accepted = 16630948;
  s.handled = 16630948;
  s.requests = 31070465;
  s.reading = 6;
  s.writing = 179;
  std::string out;
  http::format_stub_status(s, &out);
  EXPECT_EQ(out,
            "Active connections: 291 \nserver accepts handled requests\n 16630948 16630948 31070465 \n"
            "Reading: 6 Writing: 179 Waiting: 106 \n");
}

TEST(StatusFormat, LabelValuesAreEscaped) {
  std::string out;
  http::append_label_value(&out, "a\"b\\c\nd");
  EXPECT_EQ(out, "a\\\"b\\\\c\\nd");
  StatusSnapshot s;
  s.servers.resize(1);
  s.servers[0].name = "x\"y";
  s.servers[0].requests[2] = 5;
  s.servers[0].time[0] = 5;
  s.servers[0].time_us = 1500;
  std::string m;
  http::format_metrics(s, &m);
  EXPECT_NE(m.find("baton_http_requests_total{server=\"x\\\"y\",code=\"2xx\"} 5\n"), std::string::npos) << m;
  EXPECT_NE(m.find("baton_http_request_duration_seconds_bucket{server=\"x\\\"y\",le=\"+Inf\"} 5\n"), std::string::npos);
  EXPECT_NE(m.find("baton_http_request_duration_seconds_sum{server=\"x\\\"y\"} 0.001500\n"), std::string::npos);
  EXPECT_EQ(m.find("code=\"other\""), std::string::npos) << "shown only when there are some";
}
