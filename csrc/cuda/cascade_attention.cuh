// Cascade (shared-prefix) decode attention on CUDA, the twin of csrc/cpu/cascade_attention.h:
// the queries of every member of a group attend the group's shared prefix keys [0, P) in one
// pass (each K/V tile gathered into shared memory once for all members x query heads), each
// request attends its own suffix [P, seq_len) with the decode kernel (attention.cuh, keys from
// key_begin), and the partial softmax states (max, sum, weighted values) merge exactly.
// Tested on an H200 (tools/gpu_check.sh).
#pragma once

#include <cstdint>

#include "cuda/attention.cuh"

namespace radixserve::cuda {

// The groups, on the device. member_order lists the batch rows group by group: the members of
// group g are member_order[group_start[g] : group_start[g + 1]] (num_groups + 1 offsets), the
// first of them being the one whose req_to_token row gives the prefix slots (every member's
// row holds the same slots in [0, P): the caller's promise, not checked on the device).
struct CascadeGroups {
  const int64_t* member_order = nullptr;
  const int64_t* group_start = nullptr;
  const int64_t* prefix_lens = nullptr;  // [num_groups], P of each group
  int64_t num_groups = 0;
  int prefix_splits = 1;  // blocks sharing one group's prefix keys (flash-decoding)
};

// The prefix pass: for every member b of a group and query head h, the unnormalised partial
// state over the prefix keys of split s goes to slot first_slot + s of partial_ml /
// partial_acc [batch, num_q_heads, partial_stride, 2 | head_dim] (args: a decode call's tensors
// with those partial buffers; key_begin and num_splits are ignored).
cudaError_t launch_cascade_prefix(DType dtype, const AttentionArgs& args,
                                  const CascadeGroups& groups, int first_slot,
                                  cudaStream_t stream);

}  // namespace radixserve::cuda
