// Unit tests of `return` in src/http/http_config.cc: the code, quoting of the text, and variables
// compiled when the configuration is read (an unknown one is an error with its line).
#include <gtest/gtest.h>

#include <string>

#include "http/http_config.h"

namespace baton::http {
namespace {

class ReturnConfTest : public ::testing::Test {
 protected:
  // The location of "[location = /r]" whose return line is `line`.
  const Location* parse(const std::string& line) {
    conf_ = read_conf_text("t.ini", "[server a]\nlisten = 8080\nserver_name = main.test\n[location = /r]\n" + line + "\n");
    http_ = parse_http_conf(conf_, "/");
    return http_->servers.at(0)->find_location("/r");
  }
  // The error for a return line, which must not parse.
  std::string error(const std::string& line) {
    try {
      parse(line);
    } catch (const ConfError& e) {
      return e.what();
    }
    ADD_FAILURE() << "accepted: " << line;
    return "";
  }
  ConfFile conf_;
  std::unique_ptr<HttpConf> http_;
};

TEST_F(ReturnConfTest, QuotesAreTheQuotingNotTheText) {
  EXPECT_EQ(parse("return = 200 \"hello world\"")->return_text, "hello world");
  EXPECT_EQ(parse("return = 200 'hello world'")->return_text, "hello world");
  EXPECT_EQ(parse("return = 301 \"https://$host$request_uri\"")->return_value.has_variables(), true);
  EXPECT_EQ(parse("return = 200 \"\"")->return_text, "");
  // Inside quotes, a backslash escapes the quote, itself and n r t.
  EXPECT_EQ(parse("return = 200 \"say \\\"hi\\\"\\n\"")->return_text, "say \"hi\"\n");
  EXPECT_EQ(parse("return = 200 'it\\'s'")->return_text, "it's");
  EXPECT_EQ(parse("return = 200 \"a\\\\b\"")->return_text, "a\\b");
  // Without quotes the text is as written, quotes and backslashes inside included.
  EXPECT_EQ(parse("return = 200 say \"hi\"")->return_text, "say \"hi\"");
  EXPECT_EQ(parse("return = 200 a\\nb")->return_text, "a\\nb");
}

TEST_F(ReturnConfTest, VariablesAreCompiled) {
  const Location* l = parse("return = 301 https://$host$request_uri");
  EXPECT_EQ(l->return_code, 301);
  EXPECT_TRUE(l->return_value.has_variables());
  EXPECT_FALSE(parse("return = 200 ok")->return_value.has_variables());
  EXPECT_EQ(parse("return = 200 5$$")->return_value.literal(), "5$");
  EXPECT_EQ(http_->servers.at(0)->primary_name, "main.test");
}

TEST_F(ReturnConfTest, Errors) {
  auto at5 = [](const std::string& e) { return e.rfind("t.ini:5: ", 0) == 0; };
  std::string e = error("return = 301 https://$hots$request_uri");
  EXPECT_TRUE(at5(e)) << e;
  EXPECT_NE(e.find("unknown \"hots\" variable"), std::string::npos) << e;
  e = error("return = 200 \"unterminated");
  EXPECT_TRUE(at5(e)) << e;
  EXPECT_NE(e.find("unterminated"), std::string::npos) << e;
  e = error("return = 200 \"quoted\" and more");
  EXPECT_TRUE(at5(e)) << e;
  e = error("return = 200 costs 5$");
  EXPECT_TRUE(at5(e)) << e;
  e = error("return = 301 \"/a\\nb\"");
  EXPECT_TRUE(at5(e)) << e;
  EXPECT_NE(e.find("control character"), std::string::npos) << e;
  e = error("return = 301 \"\"");
  EXPECT_TRUE(at5(e)) << e;
  EXPECT_NE(e.find("needs a URL"), std::string::npos) << e;
  e = error("return = 200 a\x01z");
  EXPECT_TRUE(at5(e)) << e;
  EXPECT_NE(e.find("control character"), std::string::npos) << e;
}

}  // namespace
}  // namespace baton::http
