#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "core/shm_table.h"
#include "core/siphash.h"
#include "http/http_limit.h"
#include "os/unix/shm.h"

using namespace baton;

TEST(SipHash, ReferenceVector) {
  // The paper's test vector: key 00..0f, message 00..0e.
  unsigned char key[16], msg[15];
  for (int i = 0; i < 16; i++) key[i] = static_cast<unsigned char>(i);
  for (int i = 0; i < 15; i++) msg[i] = static_cast<unsigned char>(i);
  uint64_t k0 = 0, k1 = 0;
  for (int i = 7; i >= 0; i--) k0 = (k0 << 8) | key[i];
  for (int i = 15; i >= 8; i--) k1 = (k1 << 8) | key[i];
  EXPECT_EQ(siphash24(msg, sizeof(msg), k0, k1), 0xa129ca6149be45e5ULL);
  EXPECT_EQ(siphash24(msg, 0, k0, k1), 0x726fdb47dd0e0e31ULL);
}

class ShmTableTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string err;
    mem = SharedMemory::create("test", 64 * 1024, &err);
    ASSERT_TRUE(mem) << err;
    ASSERT_TRUE(ShmTable::format(mem->base(), mem->size(), 7));
  }
  std::unique_ptr<SharedMemory> mem;
};

TEST_F(ShmTableTest, FindsWhatItHoldsAndChecksItsLayout) {
  ShmTable t(mem->base(), mem->size(), 7);
  ASSERT_TRUE(t.valid());
  EXPECT_FALSE(ShmTable(mem->base(), mem->size(), 8).valid()) << "another kind";
  EXPECT_FALSE(ShmTable(mem->base(), mem->size() - 4096, 7).valid()) << "another size";
  ShmLock lock(t.mutex());
  EXPECT_EQ(t.find("a"), nullptr);
  ShmRecord* a = t.insert("a");
  ASSERT_NE(a, nullptr);
  a->v[0] = 42;
  std::string long_key(300, 'x');
  ShmRecord* l = t.insert(long_key);
  ASSERT_NE(l, nullptr);
  l->v[0] = 7;
  EXPECT_EQ(t.find("a")->v[0], 42);
  EXPECT_EQ(t.find(long_key)->v[0], 7);
  EXPECT_EQ(t.find(std::string(300, 'y')), nullptr) << "another long key of the same length";
  EXPECT_EQ(t.count(), 2u);
  // The long key was used last: "a" is the oldest, then the long key.
  EXPECT_EQ(t.oldest(), a);
  EXPECT_EQ(t.newer(a), l);
  EXPECT_EQ(t.newer(l), nullptr);
  t.remove(l);
  EXPECT_EQ(t.find(long_key), nullptr);
  EXPECT_EQ(t.oldest(), a);
  EXPECT_EQ(t.newer(a), nullptr);
}

TEST_F(ShmTableTest, FillsUpAndMakesRoom) {
  ShmTable t(mem->base(), mem->size(), 7);
  ShmLock lock(t.mutex());
  uint32_t n = 0;
  while (t.insert("key" + std::to_string(n))) n++;
  EXPECT_EQ(n, t.capacity());
  EXPECT_GT(n, 400u) << "64 KiB holds a few hundred records";
  for (uint32_t i = 0; i < n; i += 97) ASSERT_NE(t.find("key" + std::to_string(i)), nullptr) << i;
  ShmRecord* old = t.oldest();
  t.remove(old);
  EXPECT_NE(t.insert("new"), nullptr);
  EXPECT_EQ(t.insert("newer"), nullptr);
}

// Another process sees (and changes) the same records, under the same lock.
TEST_F(ShmTableTest, SharedWithAChild) {
  {
    ShmTable t(mem->base(), mem->size(), 7);
    ShmLock lock(t.mutex());
    t.insert("k")->v[0] = 1;
  }
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ShmTable t(mem->base(), mem->size(), 7);
    for (int i = 0; i < 1000; i++) {
      ShmLock lock(t.mutex());
      t.find("k")->v[0]++;
    }
    _exit(0);
  }
  {
    ShmTable t(mem->base(), mem->size(), 7);
    for (int i = 0; i < 1000; i++) {
      ShmLock lock(t.mutex());
      t.find("k")->v[0]++;
    }
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ShmTable t(mem->base(), mem->size(), 7);
  ShmLock lock(t.mutex());
  EXPECT_EQ(t.find("k")->v[0], 2001);
}

// A process that dies holding the lock does not stop the others: the next one is told.
TEST_F(ShmTableTest, LockOfADeadProcess) {
  ShmTable t(mem->base(), mem->size(), 7);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    t.mutex()->lock();
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ShmLock lock(t.mutex());
  EXPECT_TRUE(lock.owner_died());
}

TEST(LimitRate, Parses) {
  uint64_t r = 0;
  EXPECT_TRUE(http::parse_limit_rate("10r/s", &r));
  EXPECT_EQ(r, 10000u);
  EXPECT_TRUE(http::parse_limit_rate("30r/m", &r));
  EXPECT_EQ(r, 500u);
  EXPECT_TRUE(http::parse_limit_rate("1r/m", &r));
  EXPECT_EQ(r, 16u);
  for (const char* bad : {"0r/s", "r/s", "10", "10r/h", "-1r/s", "10 r/s"}) EXPECT_FALSE(http::parse_limit_rate(bad, &r)) << bad;
}

#include "http/http_request.h"

// A zone cleared while a request holds a count (a worker died): the old hold must not take a count
// that a request made after the clear holds.
TEST(LimitConnHolds, AHoldFromBeforeAClearIsNotReleasedIntoTheNewTable) {
  std::map<std::string, std::unique_ptr<http::LimitZone>> zones;
  auto z = std::make_unique<http::LimitZone>();
  z->kind = http::LimitKind::kConn;
  z->name = "z";
  ASSERT_EQ(z->key.compile("$http_x_key"), "");
  std::string err;
  z->shm.mem = SharedMemory::create("test", 64 * 1024, &err);
  ASSERT_TRUE(z->shm.mem) << err;
  ASSERT_TRUE(ShmTable::format(z->shm.mem->base(), z->shm.mem->size(), static_cast<uint32_t>(z->kind)));
  http::LimitSettings s;
  s.conns.push_back(http::LimitConn{z.get(), 1});
  zones["z"] = std::move(z);

  auto request = [] {
    auto r = std::make_unique<http::Request>();
    r->headers[0] = http::Header{"X-Key", "k"};
    r->header_count = 1;
    return r;
  };
  auto a = request(), b = request(), c = request();
  http::VarContext va, vb, vc;
  va.req = a.get();
  vb.req = b.get();
  vc.req = c.get();
  EXPECT_EQ(http::check_limit_conn(s, va, a.get()), 0);
  EXPECT_EQ(http::forget_conn_counts(zones), 1u);
  EXPECT_EQ(http::check_limit_conn(s, vb, b.get()), 0);
  a->limit_conns.release();  // from before the clear: counts for nothing now
  EXPECT_EQ(http::check_limit_conn(s, vc, c.get()), 503) << "b's count was taken by a's release";
  b->limit_conns.release();
  EXPECT_EQ(http::check_limit_conn(s, vc, c.get()), 0);
}
