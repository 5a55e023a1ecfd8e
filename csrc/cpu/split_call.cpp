// run_split_call / run_split_phase (split_call.h).
#include "cpu/split_call.h"

#include <omp.h>

#include <algorithm>
#include <atomic>

namespace radixserve::cpu {

void run_split_phase(const SplitCall& call, size_t p, int tid, int nth,
                     std::atomic<int64_t>* next) {
  const SplitPhase& phase = call.phases[p];
  const int used = std::max(1, std::min(nth, phase.threads));
  if (tid >= used) return;
  if (phase.dynamic && used > 1) {
    for (int64_t it = next->fetch_add(1, std::memory_order_relaxed); it < phase.items;
         it = next->fetch_add(1, std::memory_order_relaxed))
      phase.run(it, it + 1);
    return;
  }
  int64_t begin = 0, end = 0;
  static_share(phase.items, tid, used, &begin, &end);
  if (begin < end) phase.run(begin, end);
}

torch::Tensor run_split_call(const SplitCall& call) {
  for (size_t p = 0; p < call.phases.size(); ++p) {
    const SplitPhase& phase = call.phases[p];
    const int threads = std::min<int64_t>(phase.threads, phase.items);
    // Inside a region already (a StepRunner's serial part): nested regions get one thread.
    if (threads > 1 && omp_get_max_threads() > 1 && !omp_in_parallel()) {
      std::atomic<int64_t> next{0};
#pragma omp parallel num_threads(threads)
      run_split_phase(call, p, omp_get_thread_num(), omp_get_num_threads(), &next);
    } else {
      if (phase.items > 0) phase.run(0, phase.items);
    }
  }
  return call.finish ? call.finish() : torch::Tensor();
}

}  // namespace radixserve::cpu
