// The check macro of the C++ tests: counts checks and failures and prints each failure with its
// place and condition; check_summary() prints the totals and gives the process exit code;
// run_named() runs named test functions, an "ok"/"FAIL" line each, then the summary.
#pragma once
#include <cstdio>
#include <initializer_list>

inline int g_fail = 0, g_checks = 0;

#define CHECK(cond, ...)                                               \
  do {                                                                 \
    ++g_checks;                                                        \
    if (!(cond)) {                                                     \
      ++g_fail;                                                        \
      std::printf("  FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);    \
      std::printf(__VA_ARGS__);                                        \
      std::printf("\n");                                               \
    }                                                                  \
  } while (0)

inline int check_summary() {
  std::printf("%d checks, %d failed\n", g_checks, g_fail);
  return g_fail ? 1 : 0;
}

struct NamedTest {
  const char* name;
  void (*fn)();
};

inline int run_named(std::initializer_list<NamedTest> tests) {
  for (const NamedTest& t : tests) {
    const int before = g_fail;
    t.fn();
    std::printf("%s %s\n", g_fail == before ? "ok  " : "FAIL", t.name);
    std::fflush(stdout);
  }
  return check_summary();
}
