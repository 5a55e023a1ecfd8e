// StepBarrier: the barrier between the ops of a fused decode step (decoder.cpp's StepRunner).
#pragma once

#include <atomic>
#include <cstdint>

namespace radixserve::cpu {

// Waiters spin for a short while, then sleep in the kernel (a futex on Linux). OpenMP's own
// barrier either spins for milliseconds (its default policy), which collapses when other
// processes share the cores (a descheduled thread leaves its partner spinning for the rest of
// a time slice), or sleeps at once (OMP_WAIT_POLICY=passive), which costs a wake-up at each of a
// step's ~150 barriers on a quiet host. The ops between two barriers take microseconds, so a
// short spin catches a balanced step and a preempted partner costs only the spin.
class StepBarrier {
 public:
  // Every thread of the region calls this with the region's thread count before its first wait.
  void set_threads(int threads) { threads_.store(threads, std::memory_order_relaxed); }
  void wait();
  // How many waits so far ended asleep (the partner came later than the spin): a sign that the
  // region's threads do not all have a core.
  int64_t sleeps() const { return sleeps_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int> threads_{1};
  std::atomic<int> arrived_{0};
  std::atomic<uint32_t> generation_{0};
  std::atomic<int> sleepers_{0};
  std::atomic<int64_t> sleeps_{0};
};

}  // namespace radixserve::cpu
