#include "cpu/step_barrier.h"

#include <chrono>
#include <thread>

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif
#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace radixserve::cpu {
namespace {

// Long enough to cover a step's op imbalance on a quiet host, short next to a time slice.
constexpr auto kSpin = std::chrono::microseconds(50);

void cpu_relax() {
#if defined(__x86_64__)
  _mm_pause();
#endif
}

// Sleeps while *word == expected (returns at once otherwise, or on a spurious wake-up).
void sleep_while_equal(std::atomic<uint32_t>* word, uint32_t expected) {
#if defined(__linux__)
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT_PRIVATE, expected, nullptr,
          nullptr, 0);
#else
  if (word->load(std::memory_order_acquire) == expected) std::this_thread::yield();
#endif
}

void wake_all(std::atomic<uint32_t>* word) {
#if defined(__linux__)
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE_PRIVATE, INT32_MAX, nullptr,
          nullptr, 0);
#else
  (void)word;
#endif
}

}  // namespace

void StepBarrier::wait() {
  const uint32_t generation = generation_.load(std::memory_order_acquire);
  if (arrived_.fetch_add(1, std::memory_order_acq_rel) + 1 ==
      threads_.load(std::memory_order_relaxed)) {
    arrived_.store(0, std::memory_order_relaxed);
    // seq_cst pairs with the sleepers' increment: either they see the new generation before
    // sleeping, or this thread sees them and wakes them.
    generation_.fetch_add(1, std::memory_order_seq_cst);
    if (sleepers_.load(std::memory_order_seq_cst) > 0) wake_all(&generation_);
    return;
  }
  const auto deadline = std::chrono::steady_clock::now() + kSpin;
  for (int polls = 1; generation_.load(std::memory_order_acquire) == generation; ++polls) {
    if (polls % 64 == 0 && std::chrono::steady_clock::now() > deadline) {
      sleepers_.fetch_add(1, std::memory_order_seq_cst);
      sleeps_.fetch_add(1, std::memory_order_relaxed);
      while (generation_.load(std::memory_order_seq_cst) == generation)
        sleep_while_equal(&generation_, generation);
      sleepers_.fetch_sub(1, std::memory_order_relaxed);
      return;
    }
    cpu_relax();
  }
}

}  // namespace radixserve::cpu
