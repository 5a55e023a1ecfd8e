// StepRunner: a sequence of prepared calls (split_call.h) run inside ONE OpenMP region, with a
// StepBarrier between ops, instead of one region per op.
#pragma once

#include <omp.h>
#include <torch/extension.h>

#include <array>
#include <atomic>
#include <exception>

#include "cpu/kernel_checks.h"
#include "cpu/split_call.h"
#include "cpu/step_barrier.h"

namespace radixserve::cpu {

// Runs a step's ops (the fused decode step, decoder.cpp; the encoder forward,
// encoder_stack.cpp), each a serial part and then a SplitCall. Every thread of the
// step's region calls op() in the same order: the serial part runs on thread 0, the call's
// phases on all threads, with barriers between. Without a region (the per-call path) op()
// runs the serial part and then the call's own regions.
class StepRunner {
 public:
  StepRunner() = default;  // no region: the per-call path
  // Thread `tid` of `nth` inside the step's region; `shared` is the region's common state.
  StepRunner(int tid, int nth, StepRunner* shared) : tid_(tid), nth_(nth), shared_(shared) {
    shared->barrier_.set_threads(nth);
  }

  // serial() runs on one thread and returns the op's prepared call; that thread then stores
  // the call's result in *result (the other threads leave it alone: it may be shared).
  template <typename Serial>
  void op(torch::Tensor* result, Serial&& serial) {
    if (shared_ == nullptr) {
      *result = run_split_call(serial());
      return;
    }
    StepRunner& s = *shared_;
    // Two slots: thread 0 may prepare op k + 1 while another thread still reads op k's
    // phases (after a last phase that only thread 0 runs, no barrier holds them together).
    const int64_t k = ops_++;
    Slot& slot = s.slots_[k % 2];
    if (tid_ == 0) {
      try {
        slot.call = serial();
        RS_CHECK(slot.call.phases.size() <= slot.next.size(), "StepRunner: too many phases");
        for (auto& n : slot.next) n.store(0, std::memory_order_relaxed);
      } catch (...) {
        s.error_ = std::current_exception();
        s.failed_op_.store(k, std::memory_order_relaxed);
      }
    }
    s.barrier_.wait();
    // Every thread stops at the same op (the one that failed), so none waits alone.
    if (s.failed_op_.load(std::memory_order_relaxed) == k) {
      stopped_ = true;
      return;
    }
    const SplitCall& call = slot.call;
    const size_t phases = call.phases.size();
    for (size_t p = 0; p < phases; ++p) {
      run_split_phase(call, p, tid_, nth_, &slot.next[p]);
      // No barrier between two steps of thread 0 alone (this phase and the next, or this
      // last phase and the next op's serial part).
      const bool alone =
          call.phases[p].threads <= 1 && (p + 1 == phases || call.phases[p + 1].threads <= 1);
      if (!alone) s.barrier_.wait();
    }
    if (tid_ == 0) *result = call.finish ? call.finish() : torch::Tensor();
  }

  bool stopped() const { return stopped_; }
  int64_t barrier_sleeps() const { return barrier_.sleeps(); }
  void rethrow() const {
    if (error_) std::rethrow_exception(error_);
  }

 private:
  struct Slot {
    SplitCall call;
    std::array<std::atomic<int64_t>, 4> next{};  // dynamic phases' item counters
  };
  int tid_ = 0, nth_ = 1;
  StepRunner* shared_ = nullptr;
  int64_t ops_ = 0;
  bool stopped_ = false;
  // The region's common state (on the shared instance only).
  std::array<Slot, 2> slots_;
  std::atomic<int64_t> failed_op_{-1};
  StepBarrier barrier_;
  std::exception_ptr error_;
};

// One OpenMP thread for the calling thread's kernels while alive (the ICV is per thread, so
// other threads are untouched): run_split_call and at::parallel_for then run inline.
class SerialScope {
 public:
  explicit SerialScope(bool on) : saved_(on ? omp_get_max_threads() : 0) {
    if (on) omp_set_num_threads(1);
  }
  ~SerialScope() {
    if (saved_ > 0) omp_set_num_threads(saved_);
  }
  SerialScope(const SerialScope&) = delete;
  SerialScope& operator=(const SerialScope&) = delete;

 private:
  int saved_;
};

// When small runs (whose ops last microseconds) should take one thread: after a region run
// whose barriers slept more than kMaxSleeps times (a quiet host: none; a busy one leaves a
// region thread without a core, and each op then waits for it), the next kSerialRuns runs are
// serial, then a region is tried again.
class BusyFallback {
 public:
  static constexpr int64_t kMaxSleeps = 2, kSerialRuns = 32;
  // True if this run should be serial (counts it).
  bool take_serial() {
    if (left_.load(std::memory_order_relaxed) <= 0) return false;
    left_.fetch_sub(1, std::memory_order_relaxed);
    return true;
  }
  // After a region run: how many of its barrier waits slept (run_steps' result).
  void after_region(int64_t sleeps) {
    left_.store(sleeps > kMaxSleeps ? kSerialRuns : 0, std::memory_order_relaxed);
  }

 private:
  std::atomic<int64_t> left_{0};
};

// body(StepRunner&) on every thread of one region of `nth` threads (or, for one thread or
// with one_region false, once with the per-call runner); rethrows what an op threw. Returns how
// many barrier waits ended asleep (StepBarrier::sleeps; 0 without a region).
template <typename Body>
int64_t run_steps(bool one_region, int nth, Body&& body) {
  if (!one_region || nth <= 1) {
    StepRunner per_call;
    body(per_call);
    return 0;
  }
  StepRunner shared;
#pragma omp parallel num_threads(nth)
  {
    StepRunner mine(omp_get_thread_num(), omp_get_num_threads(), &shared);
    body(mine);
  }
  shared.rethrow();
  return shared.barrier_sleeps();
}

}  // namespace radixserve::cpu
