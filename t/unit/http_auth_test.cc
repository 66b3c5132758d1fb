// Unit tests of src/http/http_auth.h: the hash formats of an htpasswd file against vectors made by
// other tools ($apr1$ and {SHA} computed here, bcrypt and SHA-crypt through libcrypt), which
// entries are accepted, the user file's errors, and the Basic credentials of an Authorization field.
#include "http/http_auth.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <string>

namespace baton::http {
namespace {

// Made with `openssl passwd -apr1 -salt SALT PASSWORD` (OpenSSL 3.0).
TEST(HttpAuth, Apr1MatchesOpenSsl) {
  EXPECT_EQ(apr1_hash("password", "saltsalt"), "$apr1$saltsalt$yAAkm4libquA.ZWLHbSBq/");
  EXPECT_EQ(apr1_hash("", "ab"), "$apr1$ab$S8K6Sgp3W8c9Jb6LxgywZ.");
  // Longer than one MD5 block of the alternate digest (16 bytes).
  EXPECT_EQ(apr1_hash("a much longer password than sixteen bytes", "12345678"),
            "$apr1$12345678$RkSsHiO1RUdjaoav57ZaW/");
  // Only the first 8 characters of the salt count, and a '$' ends it.
  EXPECT_EQ(apr1_hash("password", "saltsaltXYZ"), "$apr1$saltsalt$yAAkm4libquA.ZWLHbSBq/");
  EXPECT_EQ(apr1_hash("password", "saltsalt$yAAk"), "$apr1$saltsalt$yAAkm4libquA.ZWLHbSBq/");
}

// Made with `printf PASSWORD | openssl dgst -sha1 -binary | base64`.
TEST(HttpAuth, ShaMatchesOpenSsl) {
  EXPECT_EQ(sha1_hash("password"), "{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=");
  EXPECT_EQ(sha1_hash(""), "{SHA}2jmj7l5rSw0yVb/vlWAYkK/YBwk=");
}

TEST(HttpAuth, PasswordMatchesEachFormat) {
  const char* kHashes[] = {
      "$apr1$saltsalt$yAAkm4libquA.ZWLHbSBq/",
      "{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=",
      "{PLAIN}password",
      // `openssl passwd -6 -salt saltsalt password` and `-5`.
      "$6$saltsalt$qFmFH.bQmmtXzyBY0s9v7Oicd2z4XSIecDzlB5KiA2/jctKu9YterLp8wwnSq.qc.eoxqOmSuNp2xS0ktL3nh/",
      "$5$saltsalt$gOjOtoMpVhru2uyjeJSEc/JaLQWOXMNmlOnj6T4AtC.",
      // Python's crypt.crypt("password", "$2b$04$abcdefghijklmnopqrstuu") (libxcrypt); $2y$ and $2a$
      // are the same computation for a password of ASCII characters.
      "$2b$04$abcdefghijklmnopqrstuughE8Ev8uGFaUgY2cNEySvxngrb/Jzdm",
      "$2y$04$abcdefghijklmnopqrstuughE8Ev8uGFaUgY2cNEySvxngrb/Jzdm",
      "$2a$04$abcdefghijklmnopqrstuughE8Ev8uGFaUgY2cNEySvxngrb/Jzdm",
  };
  for (const char* h : kHashes) {
    EXPECT_EQ(check_hash_format(h), "") << h;
    EXPECT_TRUE(password_matches("password", h)) << h;
    EXPECT_FALSE(password_matches("Password", h)) << h;
    EXPECT_FALSE(password_matches("", h)) << h;
    EXPECT_FALSE(password_matches("password ", h)) << h;
  }
}

TEST(HttpAuth, HashFormatsThatCannotBeChecked) {
  EXPECT_NE(check_hash_format("password"), "");           // a password in clear, without {PLAIN}
  EXPECT_NE(check_hash_format("{SHA}notbase64!"), "");
  EXPECT_NE(check_hash_format("{SHA}c2hvcnQ="), "");       // not 20 bytes
  EXPECT_NE(check_hash_format("$apr1$saltsalt$short"), "");
  EXPECT_NE(check_hash_format("$apr1$$yAAkm4libquA.ZWLHbSBq/"), "");
  EXPECT_NE(check_hash_format("$9$what$ever"), "");
  EXPECT_NE(check_hash_format("$6"), "");
}

TEST(HttpAuth, BasicCredentials) {
  std::string user, password;
  // "alice:open sesame"
  ASSERT_TRUE(parse_basic_credentials("Basic YWxpY2U6b3BlbiBzZXNhbWU=", &user, &password));
  EXPECT_EQ(user, "alice");
  EXPECT_EQ(password, "open sesame");
  // The scheme in any case, the padding optional, the password may hold ':' and be empty.
  ASSERT_TRUE(parse_basic_credentials("bAsIc   YWxpY2U6b3BlbiBzZXNhbWU", &user, &password));
  EXPECT_EQ(password, "open sesame");
  ASSERT_TRUE(parse_basic_credentials("Basic YTpiOmM=", &user, &password));  // a:b:c
  EXPECT_EQ(user, "a");
  EXPECT_EQ(password, "b:c");
  ASSERT_TRUE(parse_basic_credentials("Basic YTo=", &user, &password));  // a:
  EXPECT_EQ(password, "");

  user = password = "unchanged";
  EXPECT_FALSE(parse_basic_credentials("", &user, &password));
  EXPECT_FALSE(parse_basic_credentials("Basic", &user, &password));
  EXPECT_FALSE(parse_basic_credentials("Basic ", &user, &password));
  EXPECT_FALSE(parse_basic_credentials("Bearer YWxpY2U6eA==", &user, &password));
  EXPECT_FALSE(parse_basic_credentials("BasicYWxpY2U6eA==", &user, &password));
  EXPECT_FALSE(parse_basic_credentials("Basic YWxpY2U6eA==!", &user, &password));  // not base64
  EXPECT_FALSE(parse_basic_credentials("Basic YWxp Y2U6eA==", &user, &password));
  EXPECT_FALSE(parse_basic_credentials("Basic YWxpY2U=", &user, &password));  // "alice": no ':'
  EXPECT_FALSE(parse_basic_credentials("Basic OnB3", &user, &password));      // ":pw": no user
  EXPECT_FALSE(parse_basic_credentials("Basic Y", &user, &password));         // a lone sextet
  EXPECT_EQ(user, "unchanged");
  EXPECT_EQ(password, "unchanged");
}

class UserFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/baton-htpasswd-XXXXXX";
    int fd = mkstemp(tmpl);
    ASSERT_GE(fd, 0);
    ::close(fd);
    path_ = tmpl;
  }
  void TearDown() override { ::unlink(path_.c_str()); }
  std::string load(const std::string& text) {
    std::ofstream(path_, std::ios::binary) << text;
    return users_.load(path_);
  }
  std::string path_;
  UserFile users_;
};

TEST_F(UserFileTest, EntriesCommentsAndBlankLines) {
  ASSERT_EQ(load("# the team\n\nalice:{PLAIN}a\r\n  bob:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=:Bob, room 4\n"
                 "alice:{PLAIN}second\n"),
            "");
  ASSERT_NE(users_.find("alice"), nullptr);
  EXPECT_EQ(*users_.find("alice"), "{PLAIN}a");  // the first line of a user named twice
  ASSERT_NE(users_.find("bob"), nullptr);
  EXPECT_EQ(*users_.find("bob"), "{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=");  // the comment is not part of it
  EXPECT_EQ(users_.find("carol"), nullptr);
  EXPECT_EQ(users_.find("# the team"), nullptr);
}

TEST_F(UserFileTest, MalformedEntriesNameTheirLine) {
  EXPECT_EQ(load("alice:{PLAIN}a\nbob\n"), path_ + ":2: no \":\" between the user and the password hash");
  EXPECT_EQ(load("# x\n:{PLAIN}a\n"), path_ + ":2: an entry without a user name");
  EXPECT_EQ(load("\n\n\nbob:\n"), path_ + ":4: user \"bob\" has no password hash");
  EXPECT_EQ(load("bob:secret\n"),
            path_ + ":1: user \"bob\": unknown password hash (bcrypt $2y$, $5$, $6$, $apr1$, {SHA} or {PLAIN})");
  ::unlink(path_.c_str());
  EXPECT_EQ(users_.load(path_), "cannot read \"" + path_ + "\" (No such file or directory)");
  EXPECT_EQ(users_.load("/tmp"), "\"/tmp\" is not a file");
}

}  // namespace
}  // namespace baton::http
