// Torch-facing CUDA sampler: the checks and results of radixserve::cpu::sample, with the draw in
// cuda/sampling.cu and the logprobs from ATen ops on the device.
// Tested on an H200 (tools/gpu_check.sh).
#include <ATen/ops/empty.h>
#include <ATen/ops/log_softmax.h>
#include <ATen/ops/sort.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "cuda/sampling.cuh"
#include "cuda/torch_checks.h"
#include "cuda/torch_ops.h"

namespace radixserve::cuda {
namespace {

void check_vec(const at::Tensor& t, const char* name, at::ScalarType dtype, int64_t bs,
               const at::Tensor& logits) {
  check_cuda_tensor(t, name, 1);
  check_same_device(t, name, logits);
  check_dtype(t, name, dtype);
  check_size(t, name, 0, bs);
}

void check_mat(const at::Tensor& t, const char* name, at::ScalarType dtype,
               const at::Tensor& logits) {
  check_cuda_tensor(t, name, 2);
  check_same_device(t, name, logits);
  check_dtype(t, name, dtype);
  RS_CUDA_CHECK_VALUE(t.sizes() == logits.sizes(), name, " must have the shape of logits ",
                    logits.sizes(), ", got ", t.sizes());
}

// Per-row parameter ranges as the CPU sampler checks them. One host sync for the whole batch;
// the row-by-row message is only built when something is wrong.
void check_ranges(const at::Tensor& temps, const at::Tensor& top_ps, const at::Tensor& top_ks,
                  const at::Tensor& min_ps, const std::optional<at::Tensor>& freq,
                  const std::optional<at::Tensor>& pres, const std::optional<at::Tensor>& rep) {
  at::Tensor bad = temps.lt(0);
  auto add = [&bad](const at::Tensor& b) { bad.logical_or_(b); };
  add(temps.isfinite().logical_not());
  add(top_ps.isfinite().logical_not());
  add(top_ps.le(0));
  add(top_ps.gt(1));
  add(min_ps.isfinite().logical_not());
  add(min_ps.lt(0));
  add(min_ps.gt(1));
  add(top_ks.lt(1));
  if (freq) add(freq->isfinite().logical_not());
  if (pres) add(pres->isfinite().logical_not());
  if (rep) {
    add(rep->isfinite().logical_not());
    add(rep->le(0));
  }
  if (!bad.any().item<bool>()) return;
  const int64_t row = bad.to(at::kLong).argmax().item<int64_t>();
  RS_CUDA_CHECK_VALUE(false, "sample: row ", row, " has parameters out of range (temperature ",
                    temps[row].item<float>(), " must be finite and >= 0, top_p ",
                    top_ps[row].item<float>(), " in (0, 1], top_k ", top_ks[row].item<int>(),
                    " >= 1, min_p ", min_ps[row].item<float>(),
                    " in [0, 1], penalties finite, repetition penalty > 0)");
}

// A packed token bitmask: int32 [bs, ceil(vocab / 32)] on the logits' device.
void check_bitmask(const at::Tensor& t, const at::Tensor& logits) {
  check_cuda_tensor(t, "token_bitmask", 2);
  check_same_device(t, "token_bitmask", logits);
  check_dtype(t, "token_bitmask", at::kInt);
  check_size(t, "token_bitmask", 0, logits.size(0));
  check_size(t, "token_bitmask", 1, (logits.size(1) + 31) / 32);
}

}  // namespace

void apply_token_bitmask_(const at::Tensor& logits, const at::Tensor& token_bitmask) {
  check_cuda_tensor(logits, "logits", 2);
  check_dtype(logits, "logits", at::kFloat);
  check_bitmask(token_bitmask, logits);
  RS_CUDA_CHECK_VALUE(logits.size(0) <= 65535, "apply_token_bitmask_: at most 65535 rows, got ",
                    logits.size(0));
  const c10::cuda::CUDAGuard guard(logits.device());
  check_launch(launch_apply_token_bitmask(logits.data_ptr<float>(),
                                          token_bitmask.data_ptr<int32_t>(), logits.size(0),
                                          logits.size(1),
                                          c10::cuda::getCurrentCUDAStream(logits.device().index())),
               "apply_token_bitmask_");
}

at::Tensor greedy_sample(const at::Tensor& logits) {
  check_cuda_tensor(logits, "logits", 2);
  check_dtype(logits, "logits", at::kFloat);
  RS_CUDA_CHECK_VALUE(logits.size(1) > 0, "logits must have vocab > 0, got ", logits.sizes());
  const c10::cuda::CUDAGuard guard(logits.device());
  at::Tensor next = at::empty({logits.size(0)}, logits.options().dtype(at::kLong));
  check_launch(launch_greedy_sample(logits.data_ptr<float>(), logits.size(0), logits.size(1),
                                    next.data_ptr<int64_t>(),
                                    c10::cuda::getCurrentCUDAStream(logits.device().index())),
               "greedy_sample");
  return next;
}

std::vector<at::Tensor> sample(const at::Tensor& logits, const at::Tensor& temperatures,
                               const at::Tensor& top_ps, const at::Tensor& top_ks,
                               const at::Tensor& min_ps, const at::Tensor& seeds,
                               const at::Tensor& steps,
                               const std::optional<at::Tensor>& frequency_penalties,
                               const std::optional<at::Tensor>& presence_penalties,
                               const std::optional<at::Tensor>& repetition_penalties,
                               const std::optional<at::Tensor>& output_token_counts,
                               const std::optional<at::Tensor>& logit_bias, int64_t top_logprobs,
                               const std::optional<at::Tensor>& token_bitmask) {
  check_cuda_tensor(logits, "logits", 2);
  check_dtype(logits, "logits", at::kFloat);
  const int64_t bs = logits.size(0), vocab = logits.size(1);
  RS_CUDA_CHECK_VALUE(vocab > 0 && vocab < (int64_t{1} << 31),
                    "sample: logits must have shape [bs, vocab] with 0 < vocab < 2^31, got ",
                    logits.sizes());
  check_vec(temperatures, "temperatures", at::kFloat, bs, logits);
  check_vec(top_ps, "top_ps", at::kFloat, bs, logits);
  check_vec(top_ks, "top_ks", at::kInt, bs, logits);
  check_vec(min_ps, "min_ps", at::kFloat, bs, logits);
  check_vec(seeds, "seeds", at::kLong, bs, logits);
  check_vec(steps, "steps", at::kLong, bs, logits);
  RS_CUDA_CHECK_VALUE(top_logprobs <= vocab, "sample: top_logprobs (", top_logprobs,
                    ") exceeds the vocabulary size ", vocab);
  const bool any_pen = frequency_penalties || presence_penalties || repetition_penalties;
  RS_CUDA_CHECK_VALUE(!any_pen || output_token_counts, "sample: penalties need output_token_counts");
  if (frequency_penalties)
    check_vec(*frequency_penalties, "frequency_penalties", at::kFloat, bs, logits);
  if (presence_penalties)
    check_vec(*presence_penalties, "presence_penalties", at::kFloat, bs, logits);
  if (repetition_penalties)
    check_vec(*repetition_penalties, "repetition_penalties", at::kFloat, bs, logits);
  if (output_token_counts) check_mat(*output_token_counts, "output_token_counts", at::kInt, logits);
  if (logit_bias) check_mat(*logit_bias, "logit_bias", at::kFloat, logits);
  if (token_bitmask) check_bitmask(*token_bitmask, logits);
  const c10::cuda::CUDAGuard guard(logits.device());
  if (bs > 0) {
    check_ranges(temperatures, top_ps, top_ks, min_ps, frequency_penalties, presence_penalties,
                 repetition_penalties);
  }

  at::Tensor next = at::empty({bs}, logits.options().dtype(at::kLong));
  at::Tensor workspace;
  SamplingArgs a;
  a.logits = logits.data_ptr<float>();
  a.batch = bs;
  a.vocab = vocab;
  a.temperatures = temperatures.data_ptr<float>();
  a.top_ps = top_ps.data_ptr<float>();
  a.top_ks = top_ks.data_ptr<int32_t>();
  a.min_ps = min_ps.data_ptr<float>();
  a.seeds = seeds.data_ptr<int64_t>();
  a.steps = steps.data_ptr<int64_t>();
  if (frequency_penalties) a.frequency_penalties = frequency_penalties->data_ptr<float>();
  if (presence_penalties) a.presence_penalties = presence_penalties->data_ptr<float>();
  if (repetition_penalties) a.repetition_penalties = repetition_penalties->data_ptr<float>();
  if (output_token_counts) a.output_token_counts = output_token_counts->data_ptr<int32_t>();
  if (logit_bias) a.logit_bias = logit_bias->data_ptr<float>();
  if (token_bitmask) a.token_bitmask = token_bitmask->data_ptr<int32_t>();
  if (output_token_counts || logit_bias || token_bitmask) {
    workspace = at::empty({bs, vocab}, logits.options());
    a.workspace = workspace.data_ptr<float>();
  }
  a.next_token_ids = next.data_ptr<int64_t>();
  check_launch(launch_sample(a, c10::cuda::getCurrentCUDAStream(logits.device().index())),
               "sample");
  if (top_logprobs < 0) return {next};

  // Logprobs of the raw logits, as SGLang returns them; the top ones ordered by (logit desc,
  // id asc), which a stable descending sort gives.
  const at::Tensor lp_all = at::log_softmax(logits, 1);
  const at::Tensor lp = lp_all.gather(1, next.unsqueeze(1)).squeeze(1);
  if (top_logprobs == 0) {
    return {next, lp, at::empty({bs, 0}, logits.options()),
            at::empty({bs, 0}, logits.options().dtype(at::kLong))};
  }
  const at::Tensor top_ids =
      std::get<1>(at::sort(logits, /*stable=*/true, /*dim=*/1, /*descending=*/true))
          .narrow(1, 0, top_logprobs)
          .contiguous();
  return {next, lp, lp_all.gather(1, top_ids), top_ids};
}

}  // namespace radixserve::cuda
