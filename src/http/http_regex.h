// Regular expressions of [location ~ REGEX] and `rewrite` (PCRE2, compiled once when the
// configuration is read, JIT-compiled where the machine allows it), and the captures of the last
// match a request made: $1..$9 and named captures.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

struct pcre2_real_code_8;

namespace baton::http {

class Regex;

// What the last successful match of a request captured. The subject is copied: the captures are
// read after the URI they came from has been rewritten.
struct Captures {
  static constexpr uint32_t kMaxGroups = 32;  // groups past the 31st are not kept

  const Regex* re = nullptr;  // null: no match yet
  std::string subject;
  uint32_t count = 0;  // groups kept, the whole match ($0) included
  uint32_t ovector[2 * kMaxGroups] = {};

  void clear() {
    re = nullptr;
    count = 0;
  }
  // Group n ($0 the whole match); empty when there is no such group or it took no part.
  std::string_view group(uint32_t n) const;
  // The named group; empty when the last regex has no group of that name.
  std::string_view named(std::string_view name) const;
};

class Regex {
 public:
  Regex() = default;
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;
  ~Regex();

  // Returns "" or what is wrong with the pattern (with the offset where PCRE2 saw it).
  std::string compile(std::string_view pattern, bool caseless);
  enum class Result { kNoMatch, kMatch, kError };
  // Matches subject; on a match, and when caps is not null, keeps the captures there. A match that
  // cannot be decided (it needs more backtracking or stack than a request may take: a hostile path
  // against a pattern that backtracks without end) is kError, and the error log says so: the
  // caller answers 500, never as if the pattern had not matched.
  Result match(std::string_view subject, Captures* caps) const;

  const std::string& pattern() const { return pattern_; }
  bool caseless() const { return caseless_; }
  uint32_t groups() const { return groups_; }  // capturing groups, $0 not counted
  // The names of the named groups, in the order of their numbers.
  const std::vector<std::string>& names() const { return names_; }
  int number_of(std::string_view name) const;  // -1: no group of that name

 private:
  pcre2_real_code_8* code_ = nullptr;
  std::string pattern_;
  bool caseless_ = false;
  uint32_t groups_ = 0;
  std::vector<std::string> names_;
  std::vector<int> numbers_;  // numbers_[i]: the number of names_[i]
};

}  // namespace baton::http
