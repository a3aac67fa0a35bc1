// std::vector whose storage starts on a cache line. Per-chunk (per-task) buffers padded to whole
// lines are only free of false sharing when their base is line-aligned too: malloc gives 16 bytes,
// so neighbouring chunks shared a line that both threads wrote on every row (200000×100: 2 threads
// were no faster than 1; docs/architecture.md, "Small k").
#pragma once
#include <cstddef>
#include <new>
#include <vector>

namespace otlm::cpu {

template <class T>
struct LineAllocator {
  using value_type = T;
  static constexpr std::align_val_t kLine{64};
  LineAllocator() = default;
  template <class U>
  LineAllocator(const LineAllocator<U>&) noexcept {}
  T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), kLine)); }
  void deallocate(T* p, size_t) noexcept { ::operator delete(p, kLine); }
  template <class U>
  bool operator==(const LineAllocator<U>&) const noexcept { return true; }
  template <class U>
  bool operator!=(const LineAllocator<U>&) const noexcept { return false; }
};

template <class T>
using LineVector = std::vector<T, LineAllocator<T>>;

}  // namespace otlm::cpu
