#include "http/http_regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "core/log.h"
#include "http/http_log.h"

namespace baton::http {

namespace {

// One match data block per process: a worker matches one subject at a time and copies what it
// needs out of it.
pcre2_match_data* match_data() {
  static pcre2_match_data* data = pcre2_match_data_create(Captures::kMaxGroups, nullptr);
  return data;
}

// What one match may cost: PCRE2's default allows ten million backtracking steps (a tenth of a
// second and more on a hostile path); a URI needs far fewer. The JIT's stack may grow to 1 MiB (its
// default, 32 KiB, runs out on a group repeated over a couple of kilobytes of path).
constexpr uint32_t kMatchLimit = 200000;
constexpr uint32_t kHeapLimitKiB = 8 * 1024;
constexpr size_t kJitStackMax = 1024 * 1024;

pcre2_match_context* match_context() {
  static pcre2_match_context* ctx = [] {
    pcre2_match_context* c = pcre2_match_context_create(nullptr);
    if (!c) return c;
    pcre2_set_match_limit(c, kMatchLimit);
    pcre2_set_heap_limit(c, kHeapLimitKiB);
    if (pcre2_jit_stack* stack = pcre2_jit_stack_create(32 * 1024, kJitStackMax, nullptr))
      pcre2_jit_stack_assign(c, nullptr, stack);
    return c;
  }();
  return ctx;
}

}  // namespace

std::string_view Captures::group(uint32_t n) const {
  if (!re || n >= count) return {};
  uint32_t from = ovector[2 * n], to = ovector[2 * n + 1];
  if (from == UINT32_MAX || to < from || to > subject.size()) return {};
  return std::string_view(subject).substr(from, to - from);
}

std::string_view Captures::named(std::string_view name) const {
  if (!re) return {};
  int n = re->number_of(name);
  return n < 0 ? std::string_view() : group(static_cast<uint32_t>(n));
}

Regex::~Regex() {
  if (code_) pcre2_code_free(code_);
}

std::string Regex::compile(std::string_view pattern, bool caseless) {
  int err = 0;
  PCRE2_SIZE offset = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   caseless ? PCRE2_CASELESS : 0, &err, &offset, nullptr);
  if (!code) {
    PCRE2_UCHAR text[256];
    pcre2_get_error_message(err, text, sizeof(text));
    return "invalid regular expression \"" + std::string(pattern) + "\": " + reinterpret_cast<char*>(text) +
           " at offset " + std::to_string(offset);
  }
  // Without JIT (a machine that forbids executable memory) the interpreter matches the same.
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  if (code_) pcre2_code_free(code_);
  code_ = code;
  pattern_ = std::string(pattern);
  caseless_ = caseless;
  pcre2_pattern_info(code, PCRE2_INFO_CAPTURECOUNT, &groups_);
  names_.clear();
  numbers_.clear();
  uint32_t count = 0, entry_size = 0;
  PCRE2_SPTR table = nullptr;
  pcre2_pattern_info(code, PCRE2_INFO_NAMECOUNT, &count);
  pcre2_pattern_info(code, PCRE2_INFO_NAMEENTRYSIZE, &entry_size);
  pcre2_pattern_info(code, PCRE2_INFO_NAMETABLE, &table);
  for (uint32_t i = 0; i < count; i++) {
    PCRE2_SPTR e = table + static_cast<size_t>(i) * entry_size;
    numbers_.push_back((e[0] << 8) | e[1]);
    names_.emplace_back(reinterpret_cast<const char*>(e + 2));
  }
  return "";
}

int Regex::number_of(std::string_view name) const {
  for (size_t i = 0; i < names_.size(); i++)
    if (names_[i] == name) return numbers_[i];
  return -1;
}

Regex::Result Regex::match(std::string_view subject, Captures* caps) const {
  pcre2_match_data* md = match_data();
  if (!code_ || !md) return Result::kError;
  int rc = pcre2_match(code_, reinterpret_cast<PCRE2_SPTR>(subject.data()), subject.size(), 0, 0, md,
                       match_context());
  if (rc == PCRE2_ERROR_NOMATCH) return Result::kNoMatch;
  if (rc < 0) {
    PCRE2_UCHAR text[128];
    pcre2_get_error_message(rc, text, sizeof(text));
    std::string shown;
    append_escaped(&shown, subject.substr(0, 256));
    log_error("regular expression \"%s\" could not be matched against \"%s%s\" (%d bytes): %s", pattern_.c_str(),
              shown.c_str(), subject.size() > 256 ? "..." : "", static_cast<int>(subject.size()),
              reinterpret_cast<char*>(text));
    return Result::kError;
  }
  if (!caps) return Result::kMatch;
  // rc 0: more groups than the match data holds; the first kMaxGroups are there.
  uint32_t n = rc == 0 ? Captures::kMaxGroups : static_cast<uint32_t>(rc);
  const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
  caps->re = this;
  caps->subject.assign(subject);
  caps->count = n;
  for (uint32_t i = 0; i < 2 * n; i++)
    caps->ovector[i] = ov[i] == PCRE2_UNSET ? UINT32_MAX : static_cast<uint32_t>(ov[i]);
  return Result::kMatch;
}

}  // namespace baton::http
