// The one pybind11 module, radixserve._C. Bindings live here and nowhere else; each structure
// or kernel family has its own header and source under cache/, cpu/ (and cuda/).
#include <torch/extension.h>

// ---- includes: cache structures ----
// ---- includes: cpu kernels ----
// ---- includes: cuda kernels ----

namespace py = pybind11;

PYBIND11_MODULE(_C, m) {
  m.doc() = "radixserve native core: radix tree, KV allocator and CPU/CUDA kernels";

  // ---- section: cache structures (radix tree, KV allocator) ----

  // ---- section: cpu features ----

  // ---- section: attention (store_kv, decode, extend) ----

  // ---- section: norm, rope, activation ----

  // ---- section: linear ----

  // ---- section: sampling ----

  // ---- section: cuda ----
#ifdef RADIXSERVE_WITH_CUDA
  m.attr("has_cuda") = true;
#else
  m.attr("has_cuda") = false;
#endif
}
