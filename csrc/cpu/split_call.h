// A kernel call split into independent work items, so that it can run either in its own OpenMP
// region (the per-op kernels) or inside a region the caller already holds open (the fused
// decode step, decoder.h: one region per step instead of one per op, barriers between ops).
// One thread prepares the call (checks, output and scratch allocation, activation rounding);
// then the items of each phase may run on any thread in any order: each writes its own part
// of the output, so the result does not depend on the split.
#pragma once

#include <torch/extension.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <vector>

namespace radixserve::cpu {

struct SplitPhase {
  int64_t items = 0;
  int threads = 1;       // the most threads worth using (1: small work, the caller's thread)
  bool dynamic = false;  // items of uneven cost (attention): hand them out one at a time
  // Items [begin, end), in order (one std::function call per thread's share, not per item).
  std::function<void(int64_t begin, int64_t end)> run;
};

struct SplitCall {
  std::vector<SplitPhase> phases;  // in order, each complete before the next starts
  // Called once on the preparing thread after the last phase: the op's result.
  std::function<torch::Tensor()> finish;
};

// Items [begin, end) of thread `tid` of `nth` under OpenMP's schedule(static): contiguous
// runs, the first n % nth threads one item more.
inline void static_share(int64_t n, int tid, int nth, int64_t* begin, int64_t* end) {
  const int64_t q = n / nth, r = n % nth;
  *begin = tid * q + (tid < r ? tid : r);
  *end = *begin + q + (tid < r ? 1 : 0);
}

// The phase of a blocked matrix product: items are (row chunk, weight block) pairs over rows
// [0, m) in chunks of `row_chunk` (one chunk for m <= 2 * row_chunk) and blocks [first,
// first + blocks); kernel(nb, m0, m1) computes block nb for rows [m0, m1). With one chunk
// (decode) each thread streams a contiguous run of blocks once; with several (prefill), a
// chunk's rows stay in L2 while all the blocks pass by. `kernel` keeps what it reads alive.
template <typename Kernel>
SplitPhase row_chunk_block_phase(int64_t m, int64_t row_chunk, int64_t first, int64_t blocks,
                                 int threads, Kernel kernel) {
  const int64_t chunk = m <= 2 * row_chunk ? m : row_chunk;
  SplitPhase phase;
  phase.items = blocks * ((m + chunk - 1) / chunk);
  phase.threads = threads;
  phase.run = [=](int64_t begin, int64_t end) {
    for (int64_t it = begin; it < end; ++it) {
      const int64_t m0 = (it / blocks) * chunk;
      kernel(first + it % blocks, m0, m0 + chunk < m ? m0 + chunk : m);
    }
  };
  return phase;
}

// The per-op path: every phase in its own OpenMP region (none for one item or one thread:
// libgomp ends even a one-thread region with a futex wake-up), then finish().
torch::Tensor run_split_call(const SplitCall& call);

// Runs phase `p` of `call` on thread `tid` of an open region of `nth` threads (all of them
// call it); `next` is the region's shared counter for dynamic phases, reset to 0 before the
// phase and read by no one else. The caller puts a barrier after each phase.
void run_split_phase(const SplitCall& call, size_t p, int tid, int nth,
                     std::atomic<int64_t>* next);

}  // namespace radixserve::cpu
