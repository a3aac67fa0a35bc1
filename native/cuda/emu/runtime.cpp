// otlm CUDA emulator runtime: the block scheduler (one fiber per CUDA thread), the barriers and
// warp collectives, device memory, streams, events, device properties and errors.
// See include/otlm_cuda_emu.h for the execution model and README.md for the limits.
#include <sys/mman.h>
#include <unistd.h>

#include <boost/context/fiber.hpp>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <set>
#include <string>
#include <vector>

#include "otlm_cuda_emu.h"

#if defined(__SANITIZE_ADDRESS__)
#define OTLM_EMU_ASAN 1
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

namespace bctx = boost::context;

namespace otlm_emu {
namespace detail {

__thread ThreadView* t_thread = nullptr;
__thread BlockView* t_block = nullptr;

namespace {

// ------------------------------------------------------------------------------ configuration --
long long env_ll(const char* name, long long def) {
  const char* v = std::getenv(name);
  if (!v || !*v) return def;
  char* end = nullptr;
  double x = std::strtod(v, &end);
  if (end && (*end == 'k' || *end == 'K')) x *= 1024.0;
  if (end && (*end == 'm' || *end == 'M')) x *= 1024.0 * 1024.0;
  if (end && (*end == 'g' || *end == 'G')) x *= 1024.0 * 1024.0 * 1024.0;
  return (long long)x;
}

size_t physical_memory() {
  long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? size_t(pages) * size_t(page) : size_t(8) << 30;
}

// The emulated device, read from the environment at every call so that a test can change it:
//   OTLM_CUDA_EMU_CC=8.6       compute capability (default 9.0)
//   OTLM_CUDA_EMU_SMS=4        multiprocessor count (default 4)
//   OTLM_CUDA_EMU_MEM=2G       device memory (default: the machine's physical memory)
//   OTLM_CUDA_EMU_DEVICES=0    number of devices (default 1; 0 emulates "no device")
struct Device {
  int major = 9, minor = 0, sms = 4, count = 1;
  size_t mem = 0;
  int smem_optin = 232448, smem_per_sm = 233472, threads_per_sm = 2048, blocks_per_sm = 32, l2 = 50 << 20;
};

Device device() {
  Device d;
  if (const char* v = std::getenv("OTLM_CUDA_EMU_CC")) {
    int a = 0, b = 0;
    if (std::sscanf(v, "%d.%d", &a, &b) >= 1 && a > 0) {
      d.major = a;
      d.minor = b;
    }
  }
  d.sms = int(std::max(1LL, env_ll("OTLM_CUDA_EMU_SMS", 4)));
  d.count = int(std::max(0LL, env_ll("OTLM_CUDA_EMU_DEVICES", 1)));
  d.mem = size_t(std::max(1LL << 20, env_ll("OTLM_CUDA_EMU_MEM", (long long)physical_memory())));
  const int cc = d.major * 10 + d.minor;
  if (cc < 80) {  // Turing
    d.smem_optin = 65536, d.smem_per_sm = 65536, d.threads_per_sm = 1024, d.blocks_per_sm = 16, d.l2 = 4 << 20;
  } else if (cc == 80 || cc == 87) {  // A100, Orin
    d.smem_optin = 166912, d.smem_per_sm = 167936, d.threads_per_sm = 2048, d.blocks_per_sm = 32, d.l2 = 40 << 20;
  } else if (cc < 90 || cc >= 120) {  // GA10x, AD10x, consumer Blackwell
    d.smem_optin = 101376, d.smem_per_sm = 102400, d.threads_per_sm = 1536, d.blocks_per_sm = cc == 89 ? 24 : 16;
    d.l2 = 6 << 20;
  }
  return d;
}

// ------------------------------------------------------------------------------ errors --
thread_local cudaError_t t_last_error = cudaSuccess;

cudaError_t set_error(cudaError_t e) {
  if (e != cudaSuccess) t_last_error = e;
  return e;
}

bool g_trace_checked = false, g_trace = false;
bool trace() {
  if (!g_trace_checked) {
    g_trace = env_ll("OTLM_CUDA_EMU_TRACE", 0) != 0;
    g_trace_checked = true;
  }
  return g_trace;
}

// ------------------------------------------------------------------------------ fiber stacks --
struct Ctx;
struct StackRange {
  const void* lo = nullptr;
  size_t size = 0;
};

// mmap'ed stacks with a PROT_NONE guard page below them; a worker fiber keeps its stack for the
// life of the OS thread, so stacks are allocated once per (thread, fiber).
struct GuardedStack {
  size_t size;
  StackRange* range;
  size_t color;  // bytes left unused at the top, different for each fiber: the hot tops of the
                 // stacks would otherwise all map to the same L1 cache sets
  bctx::stack_context allocate() {
    const size_t page = size_t(sysconf(_SC_PAGESIZE));
    const size_t usable = (size + color + page - 1) / page * page, total = usable + page;
    void* base = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED) throw std::bad_alloc();
    if (mprotect(base, page, PROT_NONE) != 0) {
      munmap(base, total);
      throw std::bad_alloc();
    }
    bctx::stack_context sc;
    sc.size = total - color;
    sc.sp = static_cast<char*>(base) + total - color;
    range->lo = static_cast<char*>(base) + page;
    range->size = usable - color;
    return sc;
  }
  void deallocate(bctx::stack_context& sc) noexcept {
    char* base = static_cast<char*>(sc.sp) - sc.size;
#ifdef OTLM_EMU_ASAN
    const size_t page = size_t(sysconf(_SC_PAGESIZE));
    ASAN_UNPOISON_MEMORY_REGION(base + page, sc.size + color - page);
#endif
    munmap(base, sc.size + color);
  }
};

struct Thread;
struct Sched;

struct Ctx {
  bctx::fiber fib;
  Thread* owner = nullptr;  // null: the OS thread's own stack
  StackRange stack;
  void* fake = nullptr;  // AddressSanitizer's fake stack while switched out
};

enum State : unsigned char { kReady, kRunning, kWaiting, kDone };
enum Wait : unsigned char { kNone, kBar0, kNamed, kWarp };

struct Thread : ThreadView {
  Sched* sched = nullptr;
  Ctx ctx;
  State state = kDone;
  Wait wait = kNone;
  unsigned wait_id = 0, wait_count = 0;
  // warp collective in progress
  unsigned wmask = 0;
  void* warg = nullptr;
  CollectiveFn wfn = nullptr;
  const char* wwhat = "";
};

struct Named {
  unsigned count = 0, arrived = 0;
  std::vector<Thread*> wait;
};
struct Warp {
  unsigned arrived = 0, exited = 0, exists = 0;
  unsigned pmask = 0;           // mask and completion of the collective pending in this warp
  CollectiveFn pfn = nullptr;   // (fast check for the next lane that arrives)
};

constexpr unsigned kMaxThreads = 1024;

struct Sched {
  Ctx main;
  Ctx* prev = nullptr;
  std::vector<std::unique_ptr<Thread>> threads;
  Thread* tp[kMaxThreads] = {};  // threads[i].get()
  BlockView view{};
  size_t stack_size = 0;
  // the launch in progress
  void (*thunk)(void*) = nullptr;
  void* pack = nullptr;
  const char* name = "";
  dim3 grid, block;
  unsigned n = 0, live = 0;
  bool quitting = false;
  // ready queue
  Thread* ring[kMaxThreads];
  unsigned head = 0, count = 0;
  // barriers
  unsigned bar0 = 0;
  std::vector<Thread*> bar0_wait;
  Named named[16];
  Warp warps[kMaxThreads / 32];
  // statistics (OTLM_CUDA_EMU_STATS=1)
  unsigned long long launches = 0, blocks = 0, thread_runs = 0, switches = 0;

  Sched() {
    stack_size = size_t(env_ll("OTLM_CUDA_EMU_STACK", 0));
    if (stack_size == 0) {
#ifdef OTLM_EMU_ASAN
      stack_size = 256 * 1024;
#else
      stack_size = 64 * 1024;
#endif
    }
    bar0_wait.reserve(kMaxThreads);
  }
  ~Sched();

  void push(Thread* t) {
    t->state = kReady;
    ring[(head + count) % kMaxThreads] = t;
    ++count;
  }
  Thread* pop() {
    if (!count) return nullptr;
    Thread* t = ring[head];
    head = (head + 1) % kMaxThreads;
    --count;
    return t;
  }
};

thread_local std::unique_ptr<Sched> t_sched;

Sched& sched() {
  if (!t_sched) t_sched.reset(new Sched());
  return *t_sched;
}

// Every step between a kernel's sync point and the context switch is inlined into one function:
// a switch leaves the CPU's return-address predictor pointing into the other fiber's call chain,
// so each extra return on the way back costs a misprediction.
#define OTLM_EMU_INLINE inline __attribute__((always_inline))

// Switches from `from` (the running context) to `to`; returns when someone switches back.
OTLM_EMU_INLINE void switch_to(Sched& S, Ctx* from, Ctx* to) {
  S.prev = from;
  t_thread = to->owner;
  ++S.switches;
#ifdef OTLM_EMU_ASAN
  __sanitizer_start_switch_fiber(&from->fake, to->stack.lo, to->stack.size);
#endif
  bctx::fiber c = std::move(to->fib).resume();
#ifdef OTLM_EMU_ASAN
  const void* lo = nullptr;
  size_t sz = 0;
  __sanitizer_finish_switch_fiber(from->fake, &lo, &sz);
  S.prev->stack.lo = lo;
  S.prev->stack.size = sz;
#endif
  S.prev->fib = std::move(c);
}

void thread_exit(Sched& S, Thread* t);

bctx::fiber worker_main(Thread* t, bctx::fiber&& caller) {
  Sched& S = *t->sched;
#ifdef OTLM_EMU_ASAN
  const void* lo = nullptr;
  size_t sz = 0;
  __sanitizer_finish_switch_fiber(nullptr, &lo, &sz);
  S.prev->stack.lo = lo;
  S.prev->stack.size = sz;
#endif
  S.prev->fib = std::move(caller);
  while (!S.quitting) {
    t->state = kRunning;
    S.thunk(S.pack);
    thread_exit(S, t);  // comes back with a thread of a later block, or to quit
  }
  S.prev = &t->ctx;
  t_thread = nullptr;
#ifdef OTLM_EMU_ASAN
  __sanitizer_start_switch_fiber(nullptr, S.main.stack.lo, S.main.stack.size);
#endif
  return std::move(S.main.fib);
}

Thread* make_thread(Sched& S) {
  auto t = std::make_unique<Thread>();
  Thread* p = t.get();
  p->sched = &S;
  p->ctx.owner = p;
  p->ctx.fib = bctx::fiber(std::allocator_arg, GuardedStack{S.stack_size, &p->ctx.stack, (S.threads.size() * 3 % 64) * 64},
                           [p](bctx::fiber&& caller) { return worker_main(p, std::move(caller)); });
  S.tp[S.threads.size()] = p;
  S.threads.push_back(std::move(t));
  return p;
}

Sched::~Sched() {
  if (env_ll("OTLM_CUDA_EMU_STATS", 0))
    std::fprintf(stderr, "otlm CUDA emulator: %llu launches, %llu blocks, %llu thread runs, %llu fiber switches\n",
                 launches, blocks, thread_runs, switches);
  quitting = true;
  for (auto& t : threads)
    if (t->ctx.fib) switch_to(*this, &main, &t->ctx);
}

// ------------------------------------------------------------------------------ diagnostics --
void ranges(std::string& out, const std::vector<unsigned>& ids) {
  for (size_t i = 0; i < ids.size();) {
    size_t j = i;
    while (j + 1 < ids.size() && ids[j + 1] == ids[j] + 1) ++j;
    char b[48];
    if (j == i)
      std::snprintf(b, sizeof b, "%s%u", out.empty() ? "" : ",", ids[i]);
    else
      std::snprintf(b, sizeof b, "%s%u-%u", out.empty() ? "" : ",", ids[i], ids[j]);
    out += b;
    i = j + 1;
  }
}

void where(FILE* f) {
  Sched* S = t_sched.get();
  if (!S || !t_block) return;
  std::fprintf(f, "  in kernel %s<<<(%u,%u,%u), (%u,%u,%u), %zu>>>, block (%u,%u,%u)", S->name, S->grid.x, S->grid.y,
               S->grid.z, S->block.x, S->block.y, S->block.z, t_block->dyn_smem_bytes, t_block->bid.x,
               t_block->bid.y, t_block->bid.z);
  if (t_thread)
    std::fprintf(f, ", thread (%u,%u,%u) (warp %u lane %u)", t_thread->tid.x, t_thread->tid.y,
                 t_thread->tid.z, t_thread->warp, t_thread->lane);
  std::fprintf(f, "\n");
}

// Every live thread of the block waits and nothing can release them: say who waits where.
[[noreturn]] void deadlock(Sched& S, const char* why) {
  std::fprintf(stderr, "otlm CUDA emulator: deadlock: %s\n", why);
  t_thread = nullptr;
  where(stderr);
  std::fprintf(stderr, "  %u of %u threads have not exited, all of them wait:\n", S.live, S.n);
  std::vector<unsigned> ids;
  for (unsigned i = 0; i < S.n; ++i)
    if (S.threads[i]->state == kWaiting && S.threads[i]->wait == kBar0) ids.push_back(i);
  if (!ids.empty()) {
    std::string r;
    ranges(r, ids);
    std::fprintf(stderr, "  __syncthreads: %zu threads arrived (%u live): threads %s\n", ids.size(), S.live, r.c_str());
  }
  for (unsigned b = 0; b < 16; ++b) {
    ids.clear();
    for (unsigned i = 0; i < S.n; ++i)
      if (S.threads[i]->state == kWaiting && S.threads[i]->wait == kNamed && S.threads[i]->wait_id == b)
        ids.push_back(i);
    if (ids.empty()) continue;
    std::string r;
    ranges(r, ids);
    std::fprintf(stderr, "  named barrier %u (bar.sync %u, %u): %zu of %u threads arrived: threads %s\n", b, b,
                 S.named[b].count, ids.size(), S.named[b].count, r.c_str());
  }
  for (unsigned w = 0; w < (S.n + 31) / 32; ++w) {
    const Warp& W = S.warps[w];
    for (unsigned left = W.arrived; left;) {  // one line per (collective, mask) of this warp
      const Thread* t0 = S.tp[w * 32 + unsigned(__builtin_ctz(left))];
      std::vector<unsigned> lanes;
      for (unsigned m = left; m; m &= m - 1) {
        const unsigned l = unsigned(__builtin_ctz(m));
        const Thread* t = S.tp[w * 32 + l];
        if (t->wmask == t0->wmask && t->wfn == t0->wfn && std::strcmp(t->wwhat, t0->wwhat) == 0) {
          lanes.push_back(l);
          left &= ~(1u << l);
        }
      }
      std::string r, miss;
      ranges(r, lanes);
      for (unsigned m = t0->wmask & ~W.arrived; m; m &= m - 1) {
        const Thread* t = S.tp[w * 32 + unsigned(__builtin_ctz(m))];
        char b[96];
        std::snprintf(b, sizeof b, "%s%u (%s)", miss.empty() ? "" : ", ", t->lane,
                      t->state == kDone ? "exited"
                      : t->wait == kBar0 ? "at __syncthreads"
                      : t->wait == kNamed ? "at a named barrier"
                                          : "elsewhere");
        miss += b;
      }
      std::fprintf(stderr, "  warp %u: lanes %s in %s (mask 0x%08x), waiting for lanes %s\n", w, r.c_str(), t0->wwhat,
                   t0->wmask, miss.c_str());
    }
  }
  ids.clear();
  for (unsigned i = 0; i < S.n; ++i)
    if (S.threads[i]->state == kDone) ids.push_back(i);
  if (!ids.empty()) {
    std::string r;
    ranges(r, ids);
    std::fprintf(stderr, "  exited: threads %s\n", r.c_str());
  }
  std::fflush(stderr);
  std::abort();
}

// ------------------------------------------------------------------------------ scheduling --
// The running thread waits: run the next ready one (or report the deadlock).
OTLM_EMU_INLINE void block_wait(Sched& S, Thread* t) {
  t->state = kWaiting;
  Thread* n = S.pop();
  if (!n) deadlock(S, "every thread of the block is waiting at a barrier");
  switch_to(S, &t->ctx, &n->ctx);
  t->state = kRunning;
  t->wait = kNone;
}

OTLM_EMU_INLINE void release_bar0(Sched& S) {
  for (Thread* w : S.bar0_wait) S.push(w);
  S.bar0_wait.clear();
  S.bar0 = 0;
}

void thread_exit(Sched& S, Thread* t) {
  t->state = kDone;
  ++S.thread_runs;
  --S.live;
  Warp& W = S.warps[t->warp];
  W.exited |= 1u << t->lane;
  // a lane waiting in a warp collective that includes this lane can never go on
  for (unsigned m = W.arrived; m; m &= m - 1)
    if (S.tp[t->warp * 32 + unsigned(__builtin_ctz(m))]->wmask >> t->lane & 1u) {
      const unsigned l = unsigned(__builtin_ctz(m));
      const Thread* o = S.tp[t->warp * 32 + l];
      fatal("thread %u (warp %u lane %u) exited while lane %u waits for it in %s (mask 0x%08x)", t->linear, t->warp,
            t->lane, l, o->wwhat, o->wmask);
    }
  if (!S.bar0_wait.empty() && S.bar0 == S.live) release_bar0(S);  // exited threads count as arrived
  if (Thread* n = S.pop())
    switch_to(S, &t->ctx, &n->ctx);
  else if (S.live == 0)
    switch_to(S, &t->ctx, &S.main);
  else
    deadlock(S, "a thread exited and every thread left is waiting at a barrier");
}

OTLM_EMU_INLINE Thread* current(const char* what) {
  if (!t_thread) fatal("%s called outside a kernel", what);
  return static_cast<Thread*>(t_thread);
}

}  // namespace

// ------------------------------------------------------------------------------ device side --
void fatal(const char* fmt, ...) {
  std::fprintf(stderr, "otlm CUDA emulator: ");
  va_list ap;
  va_start(ap, fmt);
  std::vfprintf(stderr, fmt, ap);
  va_end(ap);
  std::fprintf(stderr, "\n");
  where(stderr);
  std::fflush(stderr);
  std::abort();
}

void syncthreads() {
  Thread* t = current("__syncthreads");
  Sched& S = *t->sched;
  if (++S.bar0 == S.live) {
    release_bar0(S);
    return;
  }
  t->wait = kBar0;
  S.bar0_wait.push_back(t);
  block_wait(S, t);
}

void named_barrier(unsigned id, unsigned count) {
  Thread* t = current("bar.sync");
  Sched& S = *t->sched;
  if (id >= 16) fatal("bar.sync %u: barrier ids are 0..15", id);
  if (count == 0) count = (S.n + 31) / 32 * 32;
  if (count % 32 != 0) fatal("bar.sync %u, %u: the thread count must be a multiple of the warp size", id, count);
  if (count > (S.n + 31) / 32 * 32)
    fatal("bar.sync %u, %u: more threads than the block's %u", id, count, S.n);
  if (id == 0 && count >= S.n) {
    syncthreads();
    return;
  }
  Named& b = S.named[id];
  if (b.arrived == 0)
    b.count = count;
  else if (b.count != count)
    fatal("bar.sync %u: threads disagree on the count (%u waiting for %u, this thread says %u)", id, b.arrived,
          b.count, count);
  if (++b.arrived == b.count) {
    for (Thread* w : b.wait) S.push(w);
    b.wait.clear();
    b.arrived = 0;
    return;
  }
  t->wait = kNamed;
  t->wait_id = id;
  t->wait_count = count;
  b.wait.push_back(t);
  block_wait(S, t);
}

namespace {
// A lane arrives with a mask or completion other than the pending collective's: fine only when
// the two groups of lanes are disjoint (e.g. two half-warps synchronising separately).
void check_divergence(Sched& S, const Warp& W, const Thread* t, const char* what, unsigned mask, CollectiveFn fn) {
  const unsigned me = 1u << t->lane;
  for (unsigned m = W.arrived; m; m &= m - 1) {
    const unsigned l = unsigned(__builtin_ctz(m));
    const Thread* o = S.tp[t->warp * 32 + l];
    if (((o->wmask & me) || (mask >> l & 1u)) && (o->wmask != mask || o->wfn != fn))
      fatal("%s with mask 0x%08x meets lane %u waiting in %s with mask 0x%08x (divergent warp-synchronous code)", what,
            mask, l, o->wwhat, o->wmask);
  }
}
}  // namespace

namespace {
OTLM_EMU_INLINE void collective(const char* what, unsigned mask, void* arg, CollectiveFn fn) {
  Thread* t = current(what);
  Sched& S = *t->sched;
  Warp& W = S.warps[t->warp];
  const unsigned me = 1u << t->lane;
  if (!(mask & me)) fatal("%s: mask 0x%08x does not include the calling lane %u", what, mask, t->lane);
  mask &= W.exists;
  if (mask & W.exited) fatal("%s: mask 0x%08x names lanes that have exited (0x%08x)", what, mask, mask & W.exited);
  if (!W.arrived) {
    W.pmask = mask;
    W.pfn = fn;
  } else if (mask != W.pmask || fn != W.pfn) {
    check_divergence(S, W, t, what, mask, fn);
  }
  t->wmask = mask;
  t->warg = arg;
  t->wfn = fn;
  t->wwhat = what;
  W.arrived |= me;
  if ((W.arrived & mask) != mask) {
    t->wait = kWarp;
    block_wait(S, t);
    return;
  }
  // the last lane of the group: complete the collective for all, release the others, go on
  Thread* const* lanes = &S.tp[t->warp * 32];
  if (fn) {
    void* args[32];
    for (unsigned m = mask; m; m &= m - 1) {
      const unsigned l = unsigned(__builtin_ctz(m));
      args[l] = lanes[l]->warg;
    }
    fn(args, mask);
  }
  W.arrived &= ~mask;
  for (unsigned m = mask & ~me; m; m &= m - 1) {
    Thread* o = lanes[__builtin_ctz(m)];
    o->wmask = 0;
    S.push(o);
  }
  t->wmask = 0;
  if (W.arrived) {  // another group of this warp is still gathering
    const Thread* o = lanes[__builtin_ctz(W.arrived)];
    W.pmask = o->wmask;
    W.pfn = o->wfn;
  }
}
}  // namespace

void warp_collective(const char* what, unsigned mask, void* arg, CollectiveFn fn) { collective(what, mask, arg, fn); }

void shfl_complete(void* const* args, unsigned mask) {
  for (unsigned m = mask; m; m &= m - 1) {
    const unsigned l = unsigned(__builtin_ctz(m));
    ShflArg* a = static_cast<ShflArg*>(args[l]);
    if (!(mask >> a->src & 1u))
      fatal("warp shuffle: lane %u reads lane %d, which is not in the mask 0x%08x", l, a->src, mask);
    a->result = static_cast<const ShflArg*>(args[a->src])->value;
  }
}

uint64_t shuffle(const char* what, unsigned mask, uint64_t value, int kind, int arg, int width) {
  Thread* t = current(what);
  if (width <= 0 || width > 32 || (width & (width - 1))) fatal("%s: width %d is not a power of two <= 32", what, width);
  const int lane = int(t->lane), seg = lane & ~(width - 1);
  int src = lane;
  switch (kind) {
    case 0:
      src = seg + (arg & (width - 1));
      break;
    case 1:
      src = lane - arg;
      if (src < seg) src = lane;
      break;
    case 2:
      src = lane + arg;
      if (src >= seg + width) src = lane;
      break;
    default:
      src = lane ^ arg;
      if (src < 0 || src >= seg + width) src = lane;
      break;
  }
  ShflArg a{value, src, 0};
  collective(what, mask, &a, &shfl_complete);
  return a.result;
}

namespace {
struct VoteArg {
  int pred;
  unsigned result;
};
void vote_complete(void* const* args, unsigned mask) {
  unsigned b = 0;
  for (unsigned l = 0; l < 32; ++l)
    if ((mask >> l & 1u) && static_cast<VoteArg*>(args[l])->pred) b |= 1u << l;
  for (unsigned l = 0; l < 32; ++l)
    if (mask >> l & 1u) static_cast<VoteArg*>(args[l])->result = b;
}
}  // namespace

unsigned ballot(const char* what, unsigned mask, int pred) {
  VoteArg a{pred != 0, 0};
  collective(what, mask, &a, &vote_complete);
  return a.result;
}

unsigned existing_lanes(unsigned mask) {
  Thread* t = current("existing_lanes");
  return mask & t->sched->warps[t->warp].exists;
}

// ------------------------------------------------------------------------------ launches --
namespace {
std::mutex g_attr_mu;
std::map<const void*, int> g_max_dyn_smem;  // cudaFuncAttributeMaxDynamicSharedMemorySize

bool stream_ok(cudaStream_t s);

cudaError_t check_launch(const LaunchCfg& c) {
  const dim3 g = c.grid, b = c.block;
  if (!c.fn) return cudaErrorInvalidDeviceFunction;
  if (g.x == 0 || g.y == 0 || g.z == 0 || g.x > 2147483647u || g.y > 65535 || g.z > 65535)
    return cudaErrorInvalidConfiguration;
  if (b.x == 0 || b.y == 0 || b.z == 0 || b.x > 1024 || b.y > 1024 || b.z > 64 ||
      (unsigned long long)b.x * b.y * b.z > kMaxThreads)
    return cudaErrorInvalidConfiguration;
  const Device d = device();
  if (d.count == 0) return cudaErrorNoDevice;
  if (c.smem > size_t(d.smem_optin)) return cudaErrorInvalidValue;
  if (c.smem > 48 * 1024) {
    std::lock_guard<std::mutex> lk(g_attr_mu);
    auto it = g_max_dyn_smem.find(c.fn);
    if (it == g_max_dyn_smem.end() || size_t(it->second) < c.smem) return cudaErrorInvalidValue;
  }
  if (!stream_ok(c.stream)) return cudaErrorInvalidResourceHandle;
  return cudaSuccess;
}
}  // namespace

void launch(const LaunchCfg& c, void (*thunk)(void*), void* pack) {
  if (t_thread) fatal("kernel %s launched from inside a kernel (dynamic parallelism is not emulated)", c.name);
  const cudaError_t e = check_launch(c);
  if (trace())
    std::fprintf(stderr, "otlm CUDA emulator: %s<<<(%u,%u,%u), (%u,%u,%u), %zu>>>%s%s\n", c.name, c.grid.x, c.grid.y,
                 c.grid.z, c.block.x, c.block.y, c.block.z, c.smem, e ? " rejected: " : "",
                 e ? cudaGetErrorName(e) : "");
  if (e != cudaSuccess) {
    set_error(e);
    return;
  }
  Sched& S = sched();
  const unsigned n = c.block.x * c.block.y * c.block.z;
  while (S.threads.size() < n) make_thread(S);
  ++S.launches;
  S.thunk = thunk;
  S.pack = pack;
  S.name = c.name;
  S.grid = c.grid;
  S.block = c.block;
  S.n = n;
  for (unsigned i = 0; i < n; ++i) {
    Thread* t = S.threads[i].get();
    t->tid = uint3{i % c.block.x, (i / c.block.x) % c.block.y, i / (c.block.x * c.block.y)};
    t->linear = i;
    t->lane = i % 32;
    t->warp = i / 32;
  }
  const unsigned nwarps = (n + 31) / 32;
  for (unsigned w = 0; w < nwarps; ++w) {
    const unsigned lanes = std::min(32u, n - w * 32);
    S.warps[w].exists = lanes == 32 ? 0xffffffffu : ((1u << lanes) - 1);
  }
  // dynamic shared memory: exactly the bytes asked for (AddressSanitizer sees an overrun), filled
  // with 0xff bytes (NaN as float or double) before every block
  void* smem = nullptr;
  if (posix_memalign(&smem, 128, c.smem ? c.smem : 1) != 0) fatal("out of host memory for %zu bytes of shared memory", c.smem);
  BlockView* const saved_block = t_block;
  S.view.bdim = c.block;
  S.view.gdim = c.grid;
  S.view.dyn_smem = smem;
  S.view.dyn_smem_bytes = c.smem;
  t_block = &S.view;
  for (unsigned bz = 0; bz < c.grid.z; ++bz)
    for (unsigned by = 0; by < c.grid.y; ++by)
      for (unsigned bx = 0; bx < c.grid.x; ++bx) {
        ++S.blocks;
        S.view.bid = uint3{bx, by, bz};
        if (c.smem) std::memset(smem, 0xff, c.smem);
        S.live = n;
        S.bar0 = 0;
        S.bar0_wait.clear();
        for (Named& b : S.named) {
          b.arrived = 0;
          b.wait.clear();
        }
        for (unsigned w = 0; w < nwarps; ++w) S.warps[w].arrived = S.warps[w].exited = 0;
        S.head = S.count = 0;
        for (unsigned i = 0; i < n; ++i) {
          Thread* t = S.threads[i].get();
          t->wait = kNone;
          t->wmask = 0;
          S.push(t);
        }
        Thread* first = S.pop();
        switch_to(S, &S.main, &first->ctx);  // back here when every thread of the block has exited
      }
  t_block = saved_block;
  std::free(smem);
}

// ------------------------------------------------------------------------------ memory --
namespace {
struct Memory {
  std::mutex mu;
  std::map<uintptr_t, size_t> allocs;
  size_t used = 0;
  std::set<CUstream_st*> streams;
};
Memory& memory() {
  static Memory* m = new Memory();  // never destroyed: frees may come from static destructors
  return *m;
}

// [p, p + bytes) lies inside one device allocation.
bool device_range(const void* p, size_t bytes) {
  if (bytes == 0) return true;
  Memory& M = memory();
  std::lock_guard<std::mutex> lk(M.mu);
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  auto it = M.allocs.upper_bound(a);
  if (it == M.allocs.begin()) return false;
  --it;
  return a >= it->first && a - it->first <= it->second && bytes <= it->second - (a - it->first);
}
bool is_device(const void* p) {
  Memory& M = memory();
  std::lock_guard<std::mutex> lk(M.mu);
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  auto it = M.allocs.upper_bound(a);
  if (it == M.allocs.begin()) return false;
  --it;
  return a - it->first < it->second;
}

bool stream_ok(cudaStream_t s) {
  if (s == nullptr || s == cudaStreamLegacy || s == cudaStreamPerThread) return true;
  Memory& M = memory();
  std::lock_guard<std::mutex> lk(M.mu);
  return M.streams.count(s) != 0;
}

// The device side(s) of a copy must lie inside allocations; host sides are the caller's business.
cudaError_t check_copy(void* dst, size_t dst_extent, const void* src, size_t src_extent, cudaMemcpyKind kind) {
  if (kind == cudaMemcpyDefault) {
    const bool dd = is_device(dst), sd = is_device(src);
    kind = dd ? (sd ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice)
              : (sd ? cudaMemcpyDeviceToHost : cudaMemcpyHostToHost);
  }
  if (int(kind) < 0 || int(kind) > 4) return cudaErrorInvalidMemcpyDirection;
  if (dst_extent == 0 && src_extent == 0) return cudaSuccess;
  if (!dst || !src) return cudaErrorInvalidValue;
  if ((kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice) && !device_range(dst, dst_extent))
    return cudaErrorInvalidValue;
  if ((kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice) && !device_range(src, src_extent))
    return cudaErrorInvalidValue;
  return cudaSuccess;
}
}  // namespace

cudaError_t func_set_attribute(const void* fn, cudaFuncAttribute attr, int value) {
  if (!fn) return set_error(cudaErrorInvalidDeviceFunction);
  if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize) {
    if (value < 0 || value > device().smem_optin) return set_error(cudaErrorInvalidValue);
    std::lock_guard<std::mutex> lk(g_attr_mu);
    g_max_dyn_smem[fn] = value;
    return cudaSuccess;
  }
  if (attr == cudaFuncAttributePreferredSharedMemoryCarveout) return cudaSuccess;
  return set_error(cudaErrorInvalidValue);
}

// Residency from the thread and shared-memory limits of the emulated compute capability
// (registers are not modelled).
cudaError_t occupancy(int* blocks, const void* fn, int block_size, size_t smem) {
  if (!blocks || !fn || block_size <= 0 || block_size > int(kMaxThreads)) return set_error(cudaErrorInvalidValue);
  const Device d = device();
  const int warps = (block_size + 31) / 32;
  int b = std::min(d.blocks_per_sm, d.threads_per_sm / (warps * 32));
  b = std::min<long long>(b, (long long)d.smem_per_sm / (long long)(smem + 1024));
  *blocks = std::max(b, 0);
  return cudaSuccess;
}

}  // namespace detail
}  // namespace otlm_emu

using namespace otlm_emu::detail;

unsigned __activemask() {
  Thread* t = current("__activemask");
  const Warp& W = t->sched->warps[t->warp];
  return W.exists & ~W.exited;
}

// ------------------------------------------------------------------------------ runtime API --
cudaError_t cudaGetDeviceCount(int* count) {
  if (!count) return set_error(cudaErrorInvalidValue);
  *count = device().count;
  return *count ? cudaSuccess : set_error(cudaErrorNoDevice);
}

namespace {
thread_local int t_device = 0;
}

cudaError_t cudaGetDevice(int* d) {
  if (!d) return set_error(cudaErrorInvalidValue);
  *d = t_device;
  return cudaSuccess;
}

cudaError_t cudaSetDevice(int d) {
  const Device dev = device();
  if (dev.count == 0) return set_error(cudaErrorNoDevice);
  if (d < 0 || d >= dev.count) return set_error(cudaErrorInvalidDevice);
  t_device = d;
  return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int dev) {
  if (!p) return set_error(cudaErrorInvalidValue);
  const Device d = device();
  if (dev < 0 || dev >= d.count) return set_error(d.count ? cudaErrorInvalidDevice : cudaErrorNoDevice);
  std::memset(p, 0, sizeof *p);
  std::snprintf(p->name, sizeof p->name, "otlm CUDA emulator (CPU)");
  p->totalGlobalMem = d.mem;
  p->sharedMemPerBlock = 48 * 1024;
  p->regsPerBlock = 65536;
  p->warpSize = 32;
  p->maxThreadsPerBlock = 1024;
  p->maxThreadsDim[0] = 1024, p->maxThreadsDim[1] = 1024, p->maxThreadsDim[2] = 64;
  p->maxGridSize[0] = 2147483647, p->maxGridSize[1] = 65535, p->maxGridSize[2] = 65535;
  p->clockRate = 1000000;
  p->totalConstMem = 65536;
  p->major = d.major;
  p->minor = d.minor;
  p->multiProcessorCount = d.sms;
  p->l2CacheSize = d.l2;
  p->maxThreadsPerMultiProcessor = d.threads_per_sm;
  p->sharedMemPerMultiprocessor = size_t(d.smem_per_sm);
  p->regsPerMultiprocessor = 65536;
  p->sharedMemPerBlockOptin = size_t(d.smem_optin);
  p->unifiedAddressing = 1;
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr attr, int dev) {
  if (!v) return set_error(cudaErrorInvalidValue);
  cudaDeviceProp p;
  if (cudaError_t e = cudaGetDeviceProperties(&p, dev)) return e;
  switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock: *v = p.maxThreadsPerBlock; break;
    case cudaDevAttrMaxBlockDimX: *v = p.maxThreadsDim[0]; break;
    case cudaDevAttrMaxBlockDimY: *v = p.maxThreadsDim[1]; break;
    case cudaDevAttrMaxBlockDimZ: *v = p.maxThreadsDim[2]; break;
    case cudaDevAttrMaxGridDimX: *v = p.maxGridSize[0]; break;
    case cudaDevAttrMaxGridDimY: *v = p.maxGridSize[1]; break;
    case cudaDevAttrMaxGridDimZ: *v = p.maxGridSize[2]; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *v = int(p.sharedMemPerBlock); break;
    case cudaDevAttrTotalConstantMemory: *v = int(p.totalConstMem); break;
    case cudaDevAttrWarpSize: *v = 32; break;
    case cudaDevAttrMaxRegistersPerBlock: *v = p.regsPerBlock; break;
    case cudaDevAttrClockRate: *v = p.clockRate; break;
    case cudaDevAttrMultiProcessorCount: *v = p.multiProcessorCount; break;
    case cudaDevAttrL2CacheSize: *v = p.l2CacheSize; break;
    case cudaDevAttrMaxThreadsPerMultiProcessor: *v = p.maxThreadsPerMultiProcessor; break;
    case cudaDevAttrComputeCapabilityMajor: *v = p.major; break;
    case cudaDevAttrComputeCapabilityMinor: *v = p.minor; break;
    case cudaDevAttrMaxSharedMemoryPerMultiprocessor: *v = int(p.sharedMemPerMultiprocessor); break;
    case cudaDevAttrMaxRegistersPerMultiprocessor: *v = p.regsPerMultiprocessor; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *v = int(p.sharedMemPerBlockOptin); break;
    default: return set_error(cudaErrorInvalidValue);
  }
  return cudaSuccess;
}

cudaError_t cudaDriverGetVersion(int* v) {
  if (!v) return set_error(cudaErrorInvalidValue);
  *v = 13000;
  return cudaSuccess;
}
cudaError_t cudaRuntimeGetVersion(int* v) {
  if (!v) return set_error(cudaErrorInvalidValue);
  *v = 13000;
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
cudaError_t cudaDeviceReset() { return cudaSuccess; }
cudaError_t cudaGetLastError() {
  cudaError_t e = t_last_error;
  t_last_error = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError() { return t_last_error; }

const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
#define OTLM_EMU_NAME(x) \
  case x:                \
    return #x;
    OTLM_EMU_NAME(cudaSuccess)
    OTLM_EMU_NAME(cudaErrorInvalidValue)
    OTLM_EMU_NAME(cudaErrorMemoryAllocation)
    OTLM_EMU_NAME(cudaErrorInitializationError)
    OTLM_EMU_NAME(cudaErrorInvalidConfiguration)
    OTLM_EMU_NAME(cudaErrorInvalidPitchValue)
    OTLM_EMU_NAME(cudaErrorInvalidDevicePointer)
    OTLM_EMU_NAME(cudaErrorInvalidMemcpyDirection)
    OTLM_EMU_NAME(cudaErrorInsufficientDriver)
    OTLM_EMU_NAME(cudaErrorInvalidDeviceFunction)
    OTLM_EMU_NAME(cudaErrorNoDevice)
    OTLM_EMU_NAME(cudaErrorInvalidDevice)
    OTLM_EMU_NAME(cudaErrorNoKernelImageForDevice)
    OTLM_EMU_NAME(cudaErrorUnsupportedPtxVersion)
    OTLM_EMU_NAME(cudaErrorInvalidResourceHandle)
    OTLM_EMU_NAME(cudaErrorNotReady)
    OTLM_EMU_NAME(cudaErrorLaunchOutOfResources)
    OTLM_EMU_NAME(cudaErrorLaunchFailure)
    OTLM_EMU_NAME(cudaErrorNotSupported)
    OTLM_EMU_NAME(cudaErrorUnknown)
#undef OTLM_EMU_NAME
  }
  return "cudaErrorUnknown";
}

const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInitializationError: return "initialization error";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidPitchValue: return "invalid pitch argument";
    case cudaErrorInvalidDevicePointer: return "invalid device pointer";
    case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
    case cudaErrorInsufficientDriver: return "CUDA driver version is insufficient for CUDA runtime version";
    case cudaErrorInvalidDeviceFunction: return "invalid device function";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorNoKernelImageForDevice: return "no kernel image is available for execution on the device";
    case cudaErrorUnsupportedPtxVersion: return "the provided PTX was compiled with an unsupported toolchain";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorLaunchOutOfResources: return "too many resources requested for launch";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    case cudaErrorNotSupported: return "operation not supported";
    case cudaErrorUnknown: return "unknown error";
  }
  return "unrecognized error code";
}

cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  const Device d = device();
  Memory& M = memory();
  std::lock_guard<std::mutex> lk(M.mu);
  if (total_bytes) *total_bytes = d.mem;
  if (free_bytes) *free_bytes = d.mem > M.used ? d.mem - M.used : 0;
  return cudaSuccess;
}

cudaError_t cudaMalloc(void** ptr, size_t bytes) {
  if (!ptr) return set_error(cudaErrorInvalidValue);
  *ptr = nullptr;
  if (bytes == 0) return cudaSuccess;
  const Device d = device();
  Memory& M = memory();
  {
    std::lock_guard<std::mutex> lk(M.mu);
    if (bytes > d.mem || M.used > d.mem - bytes) return set_error(cudaErrorMemoryAllocation);
    M.used += bytes;
  }
  void* p = nullptr;
  if (posix_memalign(&p, 256, bytes) != 0 || !p) {
    std::lock_guard<std::mutex> lk(M.mu);
    M.used -= bytes;
    return set_error(cudaErrorMemoryAllocation);
  }
  std::memset(p, 0xff, bytes);  // uninitialised device memory reads as NaN / -1
  {
    std::lock_guard<std::mutex> lk(M.mu);
    M.allocs[reinterpret_cast<uintptr_t>(p)] = bytes;
  }
  *ptr = p;
  return cudaSuccess;
}

cudaError_t cudaFree(void* ptr) {
  if (!ptr) return cudaSuccess;
  Memory& M = memory();
  {
    std::lock_guard<std::mutex> lk(M.mu);
    auto it = M.allocs.find(reinterpret_cast<uintptr_t>(ptr));
    if (it == M.allocs.end()) return set_error(cudaErrorInvalidDevicePointer);
    M.used -= it->second;
    M.allocs.erase(it);
  }
  std::free(ptr);
  return cudaSuccess;
}

cudaError_t cudaMallocAsync(void** ptr, size_t bytes, cudaStream_t s) {
  if (!stream_ok(s)) return set_error(cudaErrorInvalidResourceHandle);
  return cudaMalloc(ptr, bytes);
}
cudaError_t cudaFreeAsync(void* ptr, cudaStream_t s) {
  if (!stream_ok(s)) return set_error(cudaErrorInvalidResourceHandle);
  return cudaFree(ptr);
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  if (cudaError_t e = check_copy(dst, bytes, src, bytes, kind)) return set_error(e);
  if (bytes) std::memmove(dst, src, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s) {
  if (!stream_ok(s)) return set_error(cudaErrorInvalidResourceHandle);
  return cudaMemcpy(dst, src, bytes, kind);
}
cudaError_t cudaMemcpy2D(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t height,
                         cudaMemcpyKind kind) {
  if (width > dpitch || width > spitch) return set_error(cudaErrorInvalidPitchValue);
  const size_t de = height ? dpitch * (height - 1) + width : 0, se = height ? spitch * (height - 1) + width : 0;
  if (cudaError_t e = check_copy(dst, width ? de : 0, src, width ? se : 0, kind)) return set_error(e);
  if (width)
    for (size_t r = 0; r < height; ++r)
      std::memmove(static_cast<char*>(dst) + r * dpitch, static_cast<const char*>(src) + r * spitch, width);
  return cudaSuccess;
}
cudaError_t cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t height,
                              cudaMemcpyKind kind, cudaStream_t s) {
  if (!stream_ok(s)) return set_error(cudaErrorInvalidResourceHandle);
  return cudaMemcpy2D(dst, dpitch, src, spitch, width, height, kind);
}
cudaError_t cudaMemset(void* ptr, int value, size_t bytes) {
  if (bytes && !device_range(ptr, bytes)) return set_error(cudaErrorInvalidValue);
  if (bytes) std::memset(ptr, value, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* ptr, int value, size_t bytes, cudaStream_t s) {
  if (!stream_ok(s)) return set_error(cudaErrorInvalidResourceHandle);
  return cudaMemset(ptr, value, bytes);
}

// Streams and events: every operation has completed when its call returns.
struct CUstream_st {
  unsigned flags;
};
struct CUevent_st {
  unsigned flags;
  bool recorded;
  std::chrono::steady_clock::time_point at;
};

cudaError_t cudaStreamCreate(cudaStream_t* s) { return cudaStreamCreateWithFlags(s, cudaStreamDefault); }
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned flags) {
  if (!s || flags > cudaStreamNonBlocking) return set_error(cudaErrorInvalidValue);
  CUstream_st* st = new CUstream_st{flags};
  Memory& M = memory();
  std::lock_guard<std::mutex> lk(M.mu);
  M.streams.insert(st);
  *s = st;
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t s) {
  Memory& M = memory();
  {
    std::lock_guard<std::mutex> lk(M.mu);
    if (!M.streams.erase(s)) return set_error(cudaErrorInvalidResourceHandle);
  }
  delete s;
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
  return stream_ok(s) ? cudaSuccess : set_error(cudaErrorInvalidResourceHandle);
}
cudaError_t cudaStreamQuery(cudaStream_t s) { return cudaStreamSynchronize(s); }
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned) {
  if (!e) return set_error(cudaErrorInvalidResourceHandle);
  return cudaStreamSynchronize(s);
}
cudaError_t cudaEventCreate(cudaEvent_t* e) { return cudaEventCreateWithFlags(e, cudaEventDefault); }
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned flags) {
  if (!e) return set_error(cudaErrorInvalidValue);
  *e = new CUevent_st{flags, false, {}};
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  if (!e) return set_error(cudaErrorInvalidResourceHandle);
  delete e;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
  if (!e || !stream_ok(s)) return set_error(cudaErrorInvalidResourceHandle);
  e->recorded = true;
  e->at = std::chrono::steady_clock::now();
  return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t e) { return e ? cudaSuccess : set_error(cudaErrorInvalidResourceHandle); }
cudaError_t cudaEventQuery(cudaEvent_t e) { return cudaEventSynchronize(e); }
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b) {
  if (!ms || !a || !b) return set_error(cudaErrorInvalidValue);
  if (!a->recorded || !b->recorded || (a->flags | b->flags) & cudaEventDisableTiming)
    return set_error(cudaErrorInvalidResourceHandle);
  *ms = std::chrono::duration<float, std::milli>(b->at - a->at).count();
  return cudaSuccess;
}
