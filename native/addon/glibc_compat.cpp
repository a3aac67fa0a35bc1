// Linked only into the prebuilt addon (binding.gyp, otlm_prebuild), which carries a static
// libstdc++. GCC 12's libstdc++.a, built on glibc >= 2.36, calls arc4random in std::random_device
// (pulled in by its exception classes; otlm never makes a random_device). That one glibc 2.36
// symbol would make the binary refuse to load below glibc 2.36; this hidden definition satisfies
// the reference inside the addon instead, so the binary needs glibc 2.34 only.
#include <sys/random.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>

extern "C" __attribute__((visibility("hidden"))) uint32_t arc4random(void) {
  uint32_t v = 0;
  for (;;) {
    if (getrandom(&v, sizeof v, 0) == static_cast<ssize_t>(sizeof v)) return v;
    if (errno != EINTR) std::abort();  // arc4random cannot fail either
  }
}
