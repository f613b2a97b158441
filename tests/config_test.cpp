// Strict configuration (issue 10 item 9): every BULKRCU_* variable goes through one parser
// (base/base.h, env_parse / env_read); garbage is refused with one message naming the
// variable, the value and what was expected, and the default is kept.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdint>
#include <string>
#include <vector>

#include "base/base.h"

namespace {

using bulkrcu::detail::config_specs;
using bulkrcu::detail::env_bool;
using bulkrcu::detail::env_parse;
using bulkrcu::detail::env_read;
using bulkrcu::detail::env_size;
using bulkrcu::detail::env_uint;
using bulkrcu::detail::EnvKind;
using bulkrcu::detail::EnvSpec;
using bulkrcu::detail::read_config;

// Restores a variable's previous value when the test ends.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = getenv(name)) {
      had_ = true;
      old_ = old;
    }
    if (value)
      setenv(name, value, 1);
    else
      unsetenv(name);
  }
  ~ScopedEnv() {
    if (had_)
      setenv(name_, old_.c_str(), 1);
    else
      unsetenv(name_);
  }

 private:
  const char* name_;
  bool had_ = false;
  std::string old_;
};

// Reads `spec` with `value` in the environment; returns the result and the stderr output.
std::uint64_t read_with(const EnvSpec& spec, const char* value, std::string* err) {
  ScopedEnv env(spec.name, value);
  testing::internal::CaptureStderr();
  std::uint64_t v = env_read(spec);
  *err = testing::internal::GetCapturedStderr();
  return v;
}

std::size_t count_lines(const std::string& s) {
  std::size_t n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

// Garbage that no kind of variable may take.
const std::vector<const char*> kGarbage = {
    "inf",
    "-inf",
    "nan",
    "NaN",
    "1e30",
    "1E3",
    "0.5",
    "1.0",
    "0x10",
    "0X10",
    "1xyz",
    "-1",
    "-0",
    "+1",
    " 1",
    "1 ",
    "\t1",
    "abc",
    "1,5",
    "1_000",
    "--1",
    "1e-12",
    "99999999999999999999999",
    "18446744073709551616",
    "1K1",
    "KB",
    "yes please",
    "truee",
    "o",
};

TEST(ConfigParser, EveryVariableRefusesEveryKindOfGarbage) {
  const auto specs = config_specs();
  ASSERT_GE(specs.n, 7u);
  for (std::size_t i = 0; i < specs.n; ++i) {
    const EnvSpec& spec = specs.spec[i];
    for (const char* g : kGarbage) {
      std::string err;
      const std::uint64_t v = read_with(spec, g, &err);
      EXPECT_EQ(v, spec.def) << spec.name << "=" << g;
      EXPECT_EQ(count_lines(err), 1u) << spec.name << "=" << g << " printed: " << err;
      EXPECT_NE(err.find(spec.name), std::string::npos) << err;
      EXPECT_NE(err.find(std::string("\"") + g + "\""), std::string::npos) << err;
      EXPECT_NE(err.find("expected"), std::string::npos) << err;
      EXPECT_NE(err.find("default"), std::string::npos) << err;
    }
  }
}

TEST(ConfigParser, UnsetAndEmptyMeanTheDefaultSilently) {
  const auto specs = config_specs();
  for (std::size_t i = 0; i < specs.n; ++i) {
    const EnvSpec& spec = specs.spec[i];
    std::string err;
    EXPECT_EQ(read_with(spec, nullptr, &err), spec.def) << spec.name;
    EXPECT_EQ(err, "");
    EXPECT_EQ(read_with(spec, "", &err), spec.def) << spec.name;
    EXPECT_EQ(err, "");
  }
}

TEST(ConfigParser, IntegersTakeTheirRangeAndNothingBeyond) {
  const auto specs = config_specs();
  for (std::size_t i = 0; i < specs.n; ++i) {
    const EnvSpec& spec = specs.spec[i];
    if (spec.kind == EnvKind::kBool) continue;
    std::string err;
    EXPECT_EQ(read_with(spec, std::to_string(spec.min).c_str(), &err), spec.min) << spec.name;
    EXPECT_EQ(err, "");
    EXPECT_EQ(read_with(spec, std::to_string(spec.max).c_str(), &err), spec.max) << spec.name;
    EXPECT_EQ(err, "");
    if (spec.min > 0) {
      EXPECT_EQ(read_with(spec, std::to_string(spec.min - 1).c_str(), &err), spec.def) << spec.name;
      EXPECT_NE(err.find("out of range"), std::string::npos) << err;
    }
    EXPECT_EQ(read_with(spec, std::to_string(spec.max + 1).c_str(), &err), spec.def) << spec.name;
    EXPECT_NE(err.find("out of range"), std::string::npos) << err;
    EXPECT_EQ(count_lines(err), 1u);
  }
}

TEST(ConfigParser, BooleansTakeTheDocumentedSpellings) {
  const auto specs = config_specs();
  int bools = 0;
  for (std::size_t i = 0; i < specs.n; ++i) {
    const EnvSpec& spec = specs.spec[i];
    if (spec.kind != EnvKind::kBool) continue;
    ++bools;
    for (const char* t : {"1", "true", "TRUE", "True", "yes", "YES", "on", "On"}) {
      std::string err;
      EXPECT_EQ(read_with(spec, t, &err), 1u) << spec.name << "=" << t;
      EXPECT_EQ(err, "");
    }
    for (const char* f : {"0", "false", "FALSE", "no", "No", "off", "OFF"}) {
      std::string err;
      EXPECT_EQ(read_with(spec, f, &err), 0u) << spec.name << "=" << f;
      EXPECT_EQ(err, "");
    }
    for (const char* g : {"2", "00", "01", "y", "n", "enable", "disabled", "tru", "offf"}) {
      std::string err;
      EXPECT_EQ(read_with(spec, g, &err), spec.def) << spec.name << "=" << g;
      EXPECT_NE(err.find("true/false"), std::string::npos) << err;
    }
  }
  EXPECT_EQ(bools, 3);  // BULKRCU_NO_RSEQ, BULKRCU_NO_MEMBARRIER, BULKRCU_POOL_DEBUG
}

TEST(ConfigParser, SizeSuffixes) {
  const EnvSpec spec{"BULKRCU_CONFIG_TEST_SIZE", EnvKind::kSize, 7, 1, 1ull << 40, "bytes"};
  const struct {
    const char* s;
    std::uint64_t v;
  } ok[] = {{"4096", 4096},        {"64K", 64ull << 10},   {"64k", 64ull << 10}, {"64KB", 64ull << 10},
            {"64kb", 64ull << 10}, {"64KiB", 64ull << 10}, {"3M", 3ull << 20},   {"3MB", 3ull << 20},
            {"3mib", 3ull << 20},  {"2G", 2ull << 30},     {"2GB", 2ull << 30},  {"2GiB", 2ull << 30},
            {"1024G", 1ull << 40}};
  for (const auto& c : ok) {
    std::string err;
    EXPECT_EQ(read_with(spec, c.s, &err), c.v) << c.s;
    EXPECT_EQ(err, "") << c.s;
  }
  for (const char* bad : {"1025G", "64KK", "64Kb5", "64 K", "K", "64T", "64B", "64iB", "0.5M", "1e3K",
                          "17179869184G", "64Ki", "-1K"}) {
    std::string err;
    EXPECT_EQ(read_with(spec, bad, &err), 7u) << bad;
    EXPECT_EQ(count_lines(err), 1u) << bad << ": " << err;
    EXPECT_NE(err.find("K, M or G"), std::string::npos) << err;
  }
}

TEST(ConfigParser, ReasonsNameTheMistake) {
  const EnvSpec spec{"BULKRCU_CONFIG_TEST_U", EnvKind::kUint, 5, 1, 100, "widgets"};
  const struct {
    const char* s;
    const char* why;
  } cases[] = {{"0x10", "hexadecimal"},  {"0.5", "fraction"},
               {"1e3", "exponent"},      {"-3", "negative"},
               {"nan", "not a decimal"}, {"1xyz", "unexpected"},
               {"101", "out of range"},  {"99999999999999999999", "out of range"},
               {"10K", "unexpected"}};
  for (const auto& c : cases) {
    std::uint64_t out = 12345;
    const char* why = nullptr;
    EXPECT_FALSE(env_parse(spec, c.s, &out, &why)) << c.s;
    ASSERT_NE(why, nullptr);
    EXPECT_NE(std::string(why).find(c.why), std::string::npos) << c.s << ": " << why;
    EXPECT_EQ(out, 12345u) << "a refused value must not be stored";
    std::string err;
    EXPECT_EQ(read_with(spec, c.s, &err), 5u);
    EXPECT_NE(err.find("widgets in [1, 100]"), std::string::npos) << err;
    EXPECT_NE(err.find("keeping the default 5"), std::string::npos) << err;
  }
}

TEST(ConfigParser, OneLineReaders) {
  std::string err;
  {
    ScopedEnv e("BULKRCU_CONFIG_TEST_OBJ", "250000");
    EXPECT_EQ(env_uint("BULKRCU_CONFIG_TEST_OBJ", 10, 1, 1000000, "objects"), 250000u);
  }
  {
    ScopedEnv e("BULKRCU_CONFIG_TEST_OBJ", "2000000");
    testing::internal::CaptureStderr();
    EXPECT_EQ(env_uint("BULKRCU_CONFIG_TEST_OBJ", 10, 1, 1000000, "objects"), 10u);
    err = testing::internal::GetCapturedStderr();
    EXPECT_NE(err.find("BULKRCU_CONFIG_TEST_OBJ=\"2000000\""), std::string::npos) << err;
  }
  {
    ScopedEnv e("BULKRCU_CONFIG_TEST_OBJ", "8M");
    EXPECT_EQ(env_size("BULKRCU_CONFIG_TEST_OBJ", 10, 1, 1ull << 30), 8u << 20);
  }
  {
    ScopedEnv e("BULKRCU_CONFIG_TEST_OBJ", "off");
    EXPECT_FALSE(env_bool("BULKRCU_CONFIG_TEST_OBJ", true));
  }
  {
    ScopedEnv e("BULKRCU_CONFIG_TEST_OBJ", "maybe");
    testing::internal::CaptureStderr();
    EXPECT_TRUE(env_bool("BULKRCU_CONFIG_TEST_OBJ", true));
    err = testing::internal::GetCapturedStderr();
    EXPECT_EQ(count_lines(err), 1u);
  }
}

// The Config fields themselves: each variable reaches its field with its unit, and garbage in
// one variable leaves that field at its default.
TEST(Config, EachVariableReachesItsField) {
  {
    ScopedEnv a("BULKRCU_STALL_TIMEOUT", "3");
    ScopedEnv b("BULKRCU_DRAIN_MS", "250");
    ScopedEnv c("BULKRCU_MAX_PENDING", "8M");
    ScopedEnv d("BULKRCU_NO_RSEQ", "yes");
    ScopedEnv e("BULKRCU_NO_MEMBARRIER", "on");
    ScopedEnv f("BULKRCU_POOL_DEBUG", "true");
    const auto cfg = read_config();
    EXPECT_EQ(cfg.stall_timeout_ns, 3'000'000'000ull);
    EXPECT_EQ(cfg.drain_ns, 250'000'000ull);
    EXPECT_EQ(cfg.max_pending_bytes, 8ull << 20);
    EXPECT_TRUE(cfg.no_rseq);
    EXPECT_TRUE(cfg.no_membarrier);
    EXPECT_TRUE(cfg.pool_debug);
  }
  {
    ScopedEnv a("BULKRCU_STALL_TIMEOUT", "inf");
    ScopedEnv b("BULKRCU_DRAIN_MS", "nan");
    ScopedEnv c("BULKRCU_MAX_PENDING", "1e30");
    ScopedEnv d("BULKRCU_NO_RSEQ", "false");
    ScopedEnv e("BULKRCU_NO_MEMBARRIER", "no");
    ScopedEnv f("BULKRCU_POOL_DEBUG", "off");
    testing::internal::CaptureStderr();
    const auto cfg = read_config();
    const std::string err = testing::internal::GetCapturedStderr();
    EXPECT_EQ(cfg.stall_timeout_ns, 21'000'000'000ull);
    EXPECT_EQ(cfg.drain_ns, 100'000'000ull);
    EXPECT_EQ(cfg.max_pending_bytes, 64ull << 20);
    EXPECT_FALSE(cfg.no_rseq);  // "false" used to read as on
    EXPECT_FALSE(cfg.no_membarrier);
    EXPECT_FALSE(cfg.pool_debug);
    EXPECT_EQ(count_lines(err), 3u) << err;  // one per refused variable
    EXPECT_NE(err.find("BULKRCU_STALL_TIMEOUT=\"inf\""), std::string::npos) << err;
    EXPECT_NE(err.find("BULKRCU_DRAIN_MS=\"nan\""), std::string::npos) << err;
    EXPECT_NE(err.find("BULKRCU_MAX_PENDING=\"1e30\""), std::string::npos) << err;
  }
  {
    ScopedEnv a("BULKRCU_STALL_TIMEOUT", "1e-12");
    ScopedEnv c("BULKRCU_MAX_PENDING", "0.5");
    ScopedEnv b("BULKRCU_DRAIN_MS", "0");
    testing::internal::CaptureStderr();
    const auto cfg = read_config();
    const std::string err = testing::internal::GetCapturedStderr();
    EXPECT_EQ(cfg.stall_timeout_ns, 21'000'000'000ull);
    EXPECT_EQ(cfg.max_pending_bytes, 64ull << 20);
    EXPECT_EQ(cfg.drain_ns, 100'000'000ull);
    EXPECT_EQ(count_lines(err), 3u) << err;
  }
}

// A long value is cut in the message, which stays one line and one write.
TEST(ConfigParser, LongValueStaysOneLine) {
  const EnvSpec spec{"BULKRCU_CONFIG_TEST_LONG", EnvKind::kUint, 1, 1, 10, "things"};
  const std::string junk(5000, 'z');
  std::string err;
  EXPECT_EQ(read_with(spec, junk.c_str(), &err), 1u);
  EXPECT_EQ(count_lines(err), 1u);
  EXPECT_LT(err.size(), 512u);
  EXPECT_NE(err.find("BULKRCU_CONFIG_TEST_LONG"), std::string::npos);
}

}  // namespace
