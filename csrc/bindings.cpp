// The one pybind11 module, radixserve._C. Bindings live here and nowhere else; each structure
// or kernel family has its own header and source under cache/, cpu/ (and cuda/).
#include <torch/extension.h>

#include "error_message.h"

// ---- includes: cache structures ----
#include "cache/kv_allocator.h"
#include "cache/radix_tree.h"
// ---- includes: cpu kernels ----
#include "cpu/gemm.h"
#include "cpu/gemm_int16.h"
#include "cpu/activation.h"
#include "cpu/attention.h"
#include "cpu/cascade_attention.h"
#include "cpu/cpu_features.h"
#include "cpu/encoder_ops.h"
#include "cpu/norm.h"
#include "cpu/quant.h"
#include "cpu/decoder.h"
#include "cpu/encoder_stack.h"
#include "cpu/rope.h"
#include "cpu/sampling.h"
// ---- includes: cuda kernels ----
#ifdef RADIXSERVE_WITH_CUDA
#include "cuda/torch_ops.h"
#endif

namespace py = pybind11;

namespace {

// c10 errors (TORCH_CHECK_VALUE, TORCH_CHECK) -> ValueError / RuntimeError carrying just the
// message. torch's own translator is not relied on: it reaches this module only when both were
// built against one pybind11 ABI, which a CUDA torch wheel and this build need not share.
template <typename Body>
decltype(auto) without_c10_errors(Body&& body) {
  try {
    return body();
  } catch (const c10::ValueError& e) {
    throw py::value_error(e.what_without_backtrace());
  } catch (const c10::Error& e) {
    throw std::runtime_error(e.what_without_backtrace());
  }
}

// A function whose c10 errors leave it as without_c10_errors says.
template <typename R, typename... Args>
auto plain_errors(R (*f)(Args...)) {
  return [f](Args... args) -> R {
    return without_c10_errors([&]() -> R { return f(std::forward<Args>(args)...); });
  };
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "radixserve native core: radix tree, KV allocator and CPU/CUDA kernels";

  // ---- section: cache structures (radix tree, KV allocator) ----
  {
    using radixserve::KVAllocator;
    using radixserve::RadixNodeRef;
    using radixserve::RadixTree;
    // Integers as a contiguous CPU tensor of `dtype` (int32 tokens, int64 slots) from a 1-D CPU
    // int32/int64 tensor (no copy when it already fits) or a list/tuple/sequence of ints (one
    // C loop, no per-element Python objects created).
    auto read_ints = [](py::handle obj, const char* what, at::ScalarType dtype) -> at::Tensor {
      const bool narrow = dtype == at::kInt;
      auto range_error = [what](int64_t i, int64_t v) {
        return py::value_error(std::string(what) + "[" + std::to_string(i) + "] = " +
                               std::to_string(v) + " does not fit in int32");
      };
      if (THPVariable_Check(obj.ptr())) {
        const at::Tensor& t = THPVariable_Unpack(obj.ptr());
        if (t.device().type() != at::kCPU || t.dim() != 1 ||
            (t.scalar_type() != at::kLong && t.scalar_type() != at::kInt)) {
          throw py::value_error(std::string(what) + " must be a 1-D CPU int32/int64 tensor, got " +
                                t.toString() + " of shape " + radixserve::error_message(t.sizes()));
        }
        at::Tensor c = t.contiguous();
        if (narrow && c.scalar_type() == at::kLong) {
          const int64_t* p = c.data_ptr<int64_t>();
          for (int64_t i = 0; i < c.numel(); ++i) {
            if (p[i] < INT32_MIN || p[i] > INT32_MAX) throw range_error(i, p[i]);
          }
        }
        return c.scalar_type() == dtype ? c : c.to(dtype);
      }
      if (!PySequence_Check(obj.ptr()) || PyUnicode_Check(obj.ptr()) || PyBytes_Check(obj.ptr())) {
        throw py::value_error(std::string(what) + " must be a sequence of ints or a 1-D tensor");
      }
      py::object seq = py::reinterpret_steal<py::object>(PySequence_Fast(obj.ptr(), what));
      if (!seq) throw py::error_already_set();
      const Py_ssize_t n = PySequence_Fast_GET_SIZE(seq.ptr());
      PyObject** items = PySequence_Fast_ITEMS(seq.ptr());
      at::Tensor out = at::empty({static_cast<int64_t>(n)}, dtype);
      int32_t* out32 = narrow ? out.data_ptr<int32_t>() : nullptr;
      int64_t* out64 = narrow ? nullptr : out.data_ptr<int64_t>();
      for (Py_ssize_t i = 0; i < n; ++i) {
        long long v = 0;
        // Token ids are small exact ints: read them straight from the int object (the general
        // PyLong_AsLongLong path costs several times more per element).
        bool fast = false;
        PyObject* o = items[i];
#if PY_VERSION_HEX >= 0x030C0000
        if (PyLong_CheckExact(o) && PyUnstable_Long_IsCompact(reinterpret_cast<PyLongObject*>(o))) {
          v = PyUnstable_Long_CompactValue(reinterpret_cast<PyLongObject*>(o));
          fast = true;
        }
#else
        if (PyLong_CheckExact(o) && (Py_SIZE(o) >= -1 && Py_SIZE(o) <= 1)) {
          const auto d = static_cast<long long>(reinterpret_cast<PyLongObject*>(o)->ob_digit[0]);
          v = Py_SIZE(o) == 0 ? 0 : (Py_SIZE(o) == 1 ? d : -d);
          fast = true;
        }
#endif
        if (!fast) v = PyLong_AsLongLong(o);
        if (!fast && v == -1 && PyErr_Occurred()) {
          PyErr_Clear();
          throw py::value_error(std::string(what) + "[" + std::to_string(i) +
                                "] is not an integer in the int64 range");
        }
        if (narrow) {
          if (v < INT32_MIN || v > INT32_MAX) throw range_error(i, v);
          out32[i] = static_cast<int32_t>(v);
        } else {
          out64[i] = v;
        }
      }
      return out;
    };
    auto to_tensor = [](const std::vector<int64_t>& v) -> at::Tensor {
      at::Tensor t = at::empty({static_cast<int64_t>(v.size())}, at::kLong);
      if (!v.empty()) std::memcpy(t.data_ptr<int64_t>(), v.data(), v.size() * sizeof(int64_t));
      return t;
    };

    py::class_<RadixNodeRef>(m, "RadixNodeHandle", "Opaque handle to a radix tree node.")
        .def_readonly("id", &RadixNodeRef::id)
        .def_readonly("generation", &RadixNodeRef::generation)
        .def(
            "__eq__",
            [](const RadixNodeRef& a, const RadixNodeRef& b) {
              return a.id == b.id && (a.id == 0 || a.generation == b.generation);
            },
            py::is_operator())
        .def("__hash__", [](const RadixNodeRef& a) { return py::hash(py::int_(a.id)); })
        .def("__repr__", [](const RadixNodeRef& a) {
          return "RadixNodeHandle(id=" + std::to_string(a.id) +
                 ", generation=" + std::to_string(a.generation) + ")";
        });

    py::class_<KVAllocator>(m, "KVAllocator",
                            "KV slot allocator over num_slots rows in pages; page 0 (slot 0) reserved.")
        .def(py::init<int64_t, int64_t>(), py::arg("num_slots"), py::arg("page_size") = 1)
        .def(
            "alloc",
            [to_tensor](KVAllocator& a, int64_t n) -> py::object {
              std::vector<int64_t> out;
              if (!a.alloc(n, out)) return py::none();
              return py::cast(to_tensor(out));
            },
            py::arg("n"), "int64 slots of ceil(n/page_size) pages, or None if too few are free")
        .def(
            "free",
            [read_ints](KVAllocator& a, py::handle slots) {
              const at::Tensor v = read_ints(slots, "slots", at::kLong);
              a.free(v.data_ptr<int64_t>(), v.numel());
            },
            py::arg("slots"))
        .def("available", &KVAllocator::available)
        .def("reset", &KVAllocator::reset)
        .def("free_slots", [to_tensor](const KVAllocator& a) { return to_tensor(a.free_slots()); })
        .def_property_readonly("size", &KVAllocator::size)
        .def_property_readonly("page_size", &KVAllocator::page_size)
        .def_property_readonly("num_slots", &KVAllocator::num_slots);

    py::class_<RadixTree>(m, "RadixTree", "Radix tree: token ids -> KV slots, LRU eviction.")
        .def(py::init<int64_t>(), py::arg("page_size") = 1)
        .def(
            "match_prefix",
            [read_ints, to_tensor](RadixTree& t, py::handle tokens) {
              const at::Tensor tok = read_ints(tokens, "tokens", at::kInt);
              RadixTree::MatchResult r = t.match_prefix(tok.data_ptr<int32_t>(), tok.numel());
              return py::make_tuple(to_tensor(r.slots), r.node);
            },
            py::arg("tokens"), "(slots of the longest cached whole-page prefix, node handle)")
        .def(
            "insert",
            [read_ints](RadixTree& t, py::handle tokens, py::handle slots) {
              const at::Tensor tok = read_ints(tokens, "tokens", at::kInt);
              const at::Tensor sl = read_ints(slots, "slots", at::kLong);
              if (tok.numel() != sl.numel()) {
                throw py::value_error("RadixTree.insert: " + std::to_string(tok.numel()) +
                                      " tokens but " + std::to_string(sl.numel()) + " slots");
              }
              RadixTree::InsertResult r =
                  t.insert(tok.data_ptr<int32_t>(), sl.data_ptr<int64_t>(), tok.numel());
              return py::make_tuple(r.cached_len, r.node);
            },
            py::arg("tokens"), py::arg("slots"), "(cached_len, node handle of the last token)")
        .def("lock", &RadixTree::lock, py::arg("node"))
        .def("unlock", &RadixTree::unlock, py::arg("node"))
        .def(
            "evict",
            [to_tensor](RadixTree& t, int64_t n) { return to_tensor(t.evict(n)); },
            py::arg("num_tokens"), "evicted slots (at least num_tokens if that many are evictable)")
        .def("reset", [to_tensor](RadixTree& t) { return to_tensor(t.reset()); },
             "drop every node; returns all their slots")
        .def("all_slots", [to_tensor](const RadixTree& t) { return to_tensor(t.all_slots()); })
        .def("lock_ref", &RadixTree::lock_ref, py::arg("node"))
        .def_property_readonly("root", &RadixTree::root)
        .def_property_readonly("page_size", &RadixTree::page_size)
        .def("total_size", &RadixTree::total_size)
        .def("evictable_size", &RadixTree::evictable_size)
        .def("protected_size", &RadixTree::protected_size)
        .def("num_nodes", &RadixTree::num_nodes);
  }

  // ---- section: cpu features ----
  m.def(
      "cpu_features",
      []() {
        namespace rc = radixserve::cpu;
        const rc::CpuFeatures& f = rc::detected_features();
        py::dict d;
        d["avx2"] = f.avx2;
        d["avx512"] = f.avx512;
        d["avx512_bf16"] = f.avx512_bf16;
        d["avx512_emulated"] = f.avx512_emulated;
        d["best_isa"] = rc::isa_name(rc::best_isa());
        d["isa"] = rc::isa_name(rc::active_isa());
        return d;
      },
      "What the CPU supports and which kernel build (isa) the CPU kernels use now.");
  m.def(
      "set_isa",
      [](const std::string& name) {
        try {
          radixserve::cpu::set_isa(name);
        } catch (const std::invalid_argument& e) {
          throw py::value_error(e.what());
        }
      },
      py::arg("name"),
      "Force the kernel build: 'generic', 'avx2', 'avx512' (if supported) or 'auto' (the best).");

  // ---- section: attention (store_kv, decode, extend) ----
  m.def("store_kv", &radixserve::cpu::store_kv, py::arg("k_cache"), py::arg("v_cache"),
        py::arg("loc"), py::arg("k"), py::arg("v"),
        "k_cache[loc[t]] = k[t], v_cache[loc[t]] = v[t] (caches [num_slots, Hkv, D]).");
  m.def("decode_attention", &radixserve::cpu::decode_attention, py::arg("out"), py::arg("q"),
        py::arg("k_cache"), py::arg("v_cache"), py::arg("req_to_token"),
        py::arg("req_pool_indices"), py::arg("seq_lens"), py::arg("scale"),
        py::arg("sliding_window") = -1,
        "One query per request at position seq_len-1 over its KV read through req_to_token.");
  m.def("extend_attention", &radixserve::cpu::extend_attention, py::arg("out"), py::arg("q"),
        py::arg("k_cache"), py::arg("v_cache"), py::arg("req_to_token"),
        py::arg("req_pool_indices"), py::arg("seq_lens"), py::arg("extend_seq_lens"),
        py::arg("extend_start_loc"), py::arg("scale"), py::arg("sliding_window") = -1,
        "Causal attention of new tokens over their cached prefix and themselves.");

  // ---- section: cascade (shared-prefix) decode attention ----
  m.def("cascade_decode_attention", &radixserve::cpu::cascade_decode_attention, py::arg("out"),
        py::arg("q"), py::arg("k_cache"), py::arg("v_cache"), py::arg("req_to_token"),
        py::arg("req_pool_indices"), py::arg("seq_lens"), py::arg("group_ids"),
        py::arg("group_prefix_lens"), py::arg("scale"), py::arg("sliding_window") = -1,
        "decode_attention with shared prefixes: requests with the same group_ids[b] >= 0 share "
        "the KV slots of their first group_prefix_lens[group] positions, read once per group.");

  // ---- section: norm, rope, activation ----
  m.def("rms_norm", &radixserve::cpu::rms_norm, py::arg("out"), py::arg("x"), py::arg("weight"),
        py::arg("eps"), "out = x / sqrt(mean(x^2) + eps) * weight, per row of x [N, H].");
  m.def("fused_add_rms_norm", &radixserve::cpu::fused_add_rms_norm, py::arg("x"),
        py::arg("residual"), py::arg("weight"), py::arg("eps"),
        "In place: residual = x + residual; x = rms_norm(residual) * weight.");
  m.def("rotary_embedding", &radixserve::cpu::rotary_embedding, py::arg("positions"),
        py::arg("query"), py::arg("key"), py::arg("head_size"), py::arg("cos_sin_cache"),
        py::arg("is_neox"),
        "In place rope on query [T, Hq*D] and key [T, Hkv*D]; cache rows are cos then sin.");
  m.def("silu_and_mul", &radixserve::cpu::silu_and_mul, py::arg("out"), py::arg("x"),
        "out[N, I] = silu(x[:, :I]) * x[:, I:] for x [N, 2I].");

  // ---- section: encoder ops (LayerNorm, GELU, attention) for BERT-family pooling models ----
  m.def(
      "layer_norm",
      [](const at::Tensor& out, const at::Tensor& x, std::optional<at::Tensor> residual,
         const at::Tensor& weight, const at::Tensor& bias, double eps) {
        radixserve::cpu::layer_norm(out, x, residual.value_or(at::Tensor()), weight, bias, eps);
      },
      py::arg("out"), py::arg("x"), py::arg("residual"), py::arg("weight"), py::arg("bias"),
      py::arg("eps"), "out = layer_norm(x + residual) * weight + bias per row; residual may be None.");
  m.def("gelu", &radixserve::cpu::gelu, py::arg("out"), py::arg("x"),
        py::arg("tanh_approx") = false, "out = gelu(x) (erf form, or the tanh approximation).");
  m.def("encoder_attention", &radixserve::cpu::encoder_attention, py::arg("out"), py::arg("q"),
        py::arg("k"), py::arg("v"), py::arg("cu_seqlens"), py::arg("scale"),
        "Bidirectional attention over packed sequences: q, k, v float32 [T, heads, head_dim], "
        "sequence s = rows [cu_seqlens[s], cu_seqlens[s+1]); out [T, heads, head_dim].");

  // ---- section: linear ----
  m.def("pack_linear_weight", &radixserve::cpu::pack_linear_weight, py::arg("weight"),
        "weight [N, K] float32|bfloat16 -> opaque packed uint8 tensor for linear()");
  m.def("linear", &radixserve::cpu::linear, py::arg("x"), py::arg("packed"),
        py::arg("bias") = py::none(), py::arg("out") = py::none(), py::arg("col_begin") = 0,
        py::arg("col_end") = -1,
        "x [M, K] @ W^T (+ bias) -> [M, N] in x's dtype; with out ([M, N], x's dtype) only "
        "columns [col_begin, col_end) into out (ends multiples of 32 or N; same bits)");
  m.def("linear_isa", &radixserve::cpu::linear_isa, "kernel build linear() uses now");

  // ---- section: int16 linear (encoder prefill; gemm_int16_kernels.h) ----
  m.def("pack_int16_weight", &radixserve::cpu::pack_int16_weight, py::arg("weight"),
        py::arg("weight_bits"), py::arg("act_bits"),
        "weight [N, K] float32 -> packed uint8 for int16_linear: rounded per output channel to "
        "weight_bits, activations to be rounded per row to act_bits");
  m.def("int16_linear", &radixserve::cpu::int16_linear, py::arg("x"), py::arg("packed"),
        py::arg("bias") = py::none(),
        "x [M, K] float32 rounded per row @ the int16 weight^T (+ bias) -> [M, N] float32");
  m.def("int16_weight", &radixserve::cpu::int16_weight, py::arg("packed"),
        "(int16 [N, K] weight, float32 [N] scales, act_bits, K block) of a packed weight");
  m.def("int16_linear_isa", &radixserve::cpu::int16_linear_isa,
        "kernel build int16_linear() uses now");

  // ---- section: quantized linear (GGUF Q4_0 / Q4_1 / Q8_0 kept quantized) ----
  m.def("pack_quant_weight", &radixserve::cpu::pack_quant_weight, py::arg("raw"),
        py::arg("qtype"), py::arg("k"),
        "GGUF tensor data uint8 [N, K/32*block_bytes] of type q4_0|q4_1|q8_0 -> packed uint8");
  m.def("quant_linear", &radixserve::cpu::quant_linear, py::arg("x"), py::arg("packed"),
        py::arg("bias") = py::none(), py::arg("out") = py::none(), py::arg("col_begin") = 0,
        py::arg("col_end") = -1,
        "x [M, K] @ dequant(W)^T (+ bias) -> [M, N] in x's dtype; with out (float32 [M, N], x "
        "float32) only columns [col_begin, col_end) into out (ends multiples of 32 or N; same "
        "bits)");
  m.def("quant_embedding", &radixserve::cpu::quant_embedding, py::arg("ids"), py::arg("packed"),
        "rows ids (int64 [T]) of a packed weight, dequantised -> float32 [T, K]");
  m.def("dequantize_quant_weight", &radixserve::cpu::dequantize_quant_weight,
        py::arg("packed"), "packed weight -> float32 [N, K]");
  m.def("quant_weight_info", &radixserve::cpu::quant_weight_info, py::arg("packed"),
        "(qtype, N, K) of a packed weight");
  m.def("set_quant_activations", &radixserve::cpu::set_quant_activations, py::arg("mode"),
        "quant_linear activations: 'int16' per 32-block (default) or 'fp32'");
  m.def("quant_activations", &radixserve::cpu::quant_activations,
        "quant_linear's activation rounding now: 'int16' or 'fp32'");
  m.def("quant_linear_isa", &radixserve::cpu::quant_linear_isa,
        "kernel build quant_linear() uses now");

  // ---- section: the decode layer loop in one call (models/llama.py's fused decode) ----
  m.def("set_decoder_threading", &radixserve::cpu::set_decoder_threading, py::arg("mode"),
        "DecoderStack.decode threads: 'step' (one OpenMP region per call, default) or "
        "'per_call' (each kernel its own region, as the per-op path)");
  m.def("decoder_threading", &radixserve::cpu::decoder_threading,
        "DecoderStack.decode's threading now: 'step' or 'per_call'");
  m.def("run_projection_calls", &radixserve::cpu::run_projection_calls, py::arg("x"),
        py::arg("weights"), py::arg("quant"), py::arg("calls"),
        py::call_guard<py::gil_scoped_release>(),
        "a projection x @ W^T run `calls` times (weights[i % len]) the way DecoderStack.decode "
        "runs its projections (set_decoder_threading) -> the last output (benchmarks)");
  py::class_<radixserve::cpu::DecoderStack>(
      m, "DecoderStack", "A Llama-family decoder stack's decode step in one native call")
      .def(py::init<int64_t, int64_t, int64_t, double, torch::Tensor, bool>(),
           py::arg("num_heads"), py::arg("num_kv_heads"), py::arg("head_dim"),
           py::arg("rms_eps"), py::arg("cos_sin_cache"), py::arg("is_neox"))
      .def("add_layer", &radixserve::cpu::DecoderStack::add_layer, py::arg("input_norm"),
           py::arg("post_attention_norm"), py::arg("qkv"), py::arg("qkv_quant"),
           py::arg("qkv_bias"), py::arg("o"), py::arg("o_quant"), py::arg("gate_up"),
           py::arg("gate_up_quant"), py::arg("down"), py::arg("down_quant"),
           py::arg("sliding_window"), "append a layer (packed weights, as the Linears hold)")
      .def_property_readonly("num_layers", &radixserve::cpu::DecoderStack::num_layers)
      .def("decode", &radixserve::cpu::DecoderStack::decode, py::arg("h"), py::arg("positions"),
           py::arg("k_caches"), py::arg("v_caches"), py::arg("out_cache_loc"),
           py::arg("req_to_token"), py::arg("req_pool_indices"), py::arg("seq_lens"),
           py::arg("residual") = py::none(), py::arg("layer_begin") = 0,
           py::arg("layer_end") = -1, py::call_guard<py::gil_scoped_release>(),
           "layers [layer_begin, layer_end) (-1: the last) of a decode step, one token per "
           "request: embeddings [B, H] (from layer 0) or the previous range's (h, residual) "
           "-> (h, residual); k_caches / v_caches: the range's layers' pools");

  // ---- section: a BERT-family encoder's forward in one call (models/bert.py) ----
  py::class_<radixserve::cpu::EncoderStack>(
      m, "EncoderStack", "A BERT-family encoder's embeddings and layers in one native call")
      .def(py::init<torch::Tensor, torch::Tensor, torch::Tensor, torch::Tensor, torch::Tensor,
                    int64_t, int64_t, double, double, bool>(),
           py::arg("word_embeddings"), py::arg("position_embeddings"),
           py::arg("token_type_embeddings"), py::arg("embed_norm_weight"),
           py::arg("embed_norm_bias"), py::arg("num_heads"), py::arg("head_dim"), py::arg("eps"),
           py::arg("scale"), py::arg("tanh_gelu"))
      .def("add_layer", &radixserve::cpu::EncoderStack::add_layer, py::arg("qkv"),
           py::arg("qkv_bias"), py::arg("out"), py::arg("out_bias"), py::arg("attn_norm_weight"),
           py::arg("attn_norm_bias"), py::arg("inter"), py::arg("inter_bias"), py::arg("down"),
           py::arg("down_bias"), py::arg("out_norm_weight"), py::arg("out_norm_bias"),
           "append a layer (projections packed by pack_int16_weight, as the Linears hold them)")
      .def_property_readonly("num_layers", &radixserve::cpu::EncoderStack::num_layers)
      .def_property_readonly("region_forwards", &radixserve::cpu::EncoderStack::region_forwards,
                             "forwards run in one OpenMP region so far (not serial, more than one thread)")
      .def("forward", &radixserve::cpu::EncoderStack::forward, py::arg("input_ids"),
           py::arg("positions"), py::arg("token_type_ids"), py::arg("cu_seqlens"),
           py::arg("serial"), py::call_guard<py::gil_scoped_release>(),
           "packed whole sequences (int64 ids, positions, token types or None, cu_seqlens) -> "
           "hidden states [T, H] after the last layer; serial: no OpenMP region");

  // ---- section: sampling ----
  {
    using OptT = const std::optional<at::Tensor>&;
    m.def(
        "sample",
        [](const at::Tensor& logits, const at::Tensor& temperatures,
                       const at::Tensor& top_ps, const at::Tensor& top_ks, const at::Tensor& min_ps,
                       const at::Tensor& seeds, const at::Tensor& steps, OptT frequency_penalties,
                       OptT presence_penalties, OptT repetition_penalties,
                       OptT output_token_counts, OptT logit_bias, int64_t top_logprobs,
                       OptT token_bitmask) {
          return without_c10_errors([&] {
            return radixserve::cpu::sample(logits, temperatures, top_ps, top_ks, min_ps, seeds,
                                           steps, frequency_penalties, presence_penalties,
                                           repetition_penalties, output_token_counts, logit_bias,
                                           top_logprobs, token_bitmask);
          });
        },
        py::arg("logits"), py::arg("temperatures"), py::arg("top_ps"), py::arg("top_ks"),
        py::arg("min_ps"), py::arg("seeds"), py::arg("steps"),
        py::arg("frequency_penalties") = py::none(), py::arg("presence_penalties") = py::none(),
        py::arg("repetition_penalties") = py::none(), py::arg("output_token_counts") = py::none(),
        py::arg("logit_bias") = py::none(), py::arg("top_logprobs") = -1,
        py::arg("token_bitmask") = py::none(),
        "Sample one token per row (see csrc/cpu/sampling.cpp for the exact definition). Returns "
        "[next_ids] or, when top_logprobs >= 0, [next_ids, logprobs, top_vals, top_ids]. "
        "token_bitmask: int32 [bs, ceil(vocab / 32)] grammar masks (bit set = token allowed).");
    m.def(
        "verify_drafts",
        [](const at::Tensor& logits, const at::Tensor& temperatures,
                       const at::Tensor& top_ps, const at::Tensor& top_ks, const at::Tensor& min_ps,
                       const at::Tensor& seeds, const at::Tensor& steps,
                       const at::Tensor& draft_ids, const at::Tensor& num_drafts,
                       OptT frequency_penalties, OptT presence_penalties,
                       OptT repetition_penalties, OptT output_token_counts, OptT logit_bias) {
          return without_c10_errors([&] {
            return radixserve::cpu::verify_drafts(
                logits, temperatures, top_ps, top_ks, min_ps, seeds, steps, draft_ids,
                num_drafts, frequency_penalties, presence_penalties, repetition_penalties,
                output_token_counts, logit_bias);
          });
        },
        py::arg("logits"), py::arg("temperatures"), py::arg("top_ps"), py::arg("top_ks"),
        py::arg("min_ps"), py::arg("seeds"), py::arg("steps"), py::arg("draft_ids"),
        py::arg("num_drafts"), py::arg("frequency_penalties") = py::none(),
        py::arg("presence_penalties") = py::none(), py::arg("repetition_penalties") = py::none(),
        py::arg("output_token_counts") = py::none(), py::arg("logit_bias") = py::none(),
        "Speculative verification of n-gram drafts (see csrc/cpu/sampling.h): logits "
        "[sum(1 + num_drafts), vocab], one parameter row per request. Returns [accepted, "
        "next_token] (int64 [n]).");
    m.def(
        "apply_token_bitmask_",
        [](const at::Tensor& logits, const at::Tensor& token_bitmask) {
          without_c10_errors([&] {
            radixserve::cpu::apply_token_bitmask_(logits, token_bitmask);
            return 0;
          });
        },
        py::arg("logits"), py::arg("token_bitmask"),
        "In place: logits[r, t] = -inf where the packed int32 token_bitmask[r] clears bit t.");
    m.def(
        "sampling_uniforms",
        [](const at::Tensor& seeds, const at::Tensor& steps) {
          return without_c10_errors(
              [&] { return radixserve::cpu::sampling_uniforms(seeds, steps); });
        },
        py::arg("seeds"), py::arg("steps"),
        "The float64 uniform of each (seed, step) that sample() draws with.");
    m.def(
        "sampling_set_isa",
        [](const std::string& name) {
          return without_c10_errors([&] { return radixserve::cpu::sampling_set_isa(name); });
        },
        py::arg("name"),
        "Sampler row primitives: 'auto', 'avx512', 'avx2' or 'generic'; returns the one in use.");
  }

  // ---- section: cuda ----
  // The CUDA ops (untested on hardware) take CUDA tensors; the Python layers pick `<name>_cuda`
  // when a tensor is on a GPU and has_cuda is true.
#ifdef RADIXSERVE_WITH_CUDA
  m.attr("has_cuda") = true;
  {
    namespace rc = radixserve::cuda;
    m.def("cuda_attention_head_dims", &rc::attention_head_dims,
          "The head dims the CUDA attention ops accept.");
    m.def("store_kv_cuda", plain_errors(&rc::store_kv), py::arg("k_cache"), py::arg("v_cache"),
          py::arg("loc"), py::arg("k"), py::arg("v"), "store_kv on CUDA tensors.");
    m.def("decode_attention_cuda", plain_errors(&rc::decode_attention), py::arg("out"),
          py::arg("q"), py::arg("k_cache"), py::arg("v_cache"), py::arg("req_to_token"),
          py::arg("req_pool_indices"), py::arg("seq_lens"), py::arg("scale"),
          py::arg("sliding_window") = -1, "decode_attention on CUDA tensors.");
    m.def("cascade_decode_attention_cuda", plain_errors(&rc::cascade_decode_attention),
          py::arg("out"), py::arg("q"), py::arg("k_cache"), py::arg("v_cache"),
          py::arg("req_to_token"), py::arg("req_pool_indices"), py::arg("seq_lens"),
          py::arg("group_ids"), py::arg("group_prefix_lens"), py::arg("scale"),
          py::arg("sliding_window") = -1, "cascade_decode_attention on CUDA tensors.");
    m.def("extend_attention_cuda", plain_errors(&rc::extend_attention), py::arg("out"),
          py::arg("q"), py::arg("k_cache"), py::arg("v_cache"), py::arg("req_to_token"),
          py::arg("req_pool_indices"), py::arg("seq_lens"), py::arg("extend_seq_lens"),
          py::arg("extend_start_loc"), py::arg("scale"), py::arg("sliding_window") = -1,
          "extend_attention on CUDA tensors.");
    m.def("rms_norm_cuda", plain_errors(&rc::rms_norm), py::arg("out"), py::arg("x"),
          py::arg("weight"), py::arg("eps"), "rms_norm on CUDA tensors.");
    m.def("fused_add_rms_norm_cuda", plain_errors(&rc::fused_add_rms_norm), py::arg("x"),
          py::arg("residual"), py::arg("weight"), py::arg("eps"),
          "fused_add_rms_norm on CUDA tensors (in place).");
    m.def("rotary_embedding_cuda", plain_errors(&rc::rotary_embedding), py::arg("positions"),
          py::arg("query"), py::arg("key"), py::arg("head_size"), py::arg("cos_sin_cache"),
          py::arg("is_neox"), "rotary_embedding on CUDA tensors (in place).");
    m.def("silu_and_mul_cuda", plain_errors(&rc::silu_and_mul), py::arg("out"), py::arg("x"),
          "silu_and_mul on CUDA tensors.");
    m.def(
        "layer_norm_cuda",
        [](const at::Tensor& out, const at::Tensor& x, std::optional<at::Tensor> residual,
           const at::Tensor& weight, const at::Tensor& bias, double eps) {
          without_c10_errors(
              [&] { rc::layer_norm(out, x, residual.value_or(at::Tensor()), weight, bias, eps); });
        },
        py::arg("out"), py::arg("x"), py::arg("residual"), py::arg("weight"), py::arg("bias"),
        py::arg("eps"), "layer_norm on CUDA tensors.");
    m.def("gelu_cuda", plain_errors(&rc::gelu), py::arg("out"), py::arg("x"),
          py::arg("tanh_approx") = false, "gelu on CUDA tensors.");
    m.def("encoder_attention_cuda", plain_errors(&rc::encoder_attention), py::arg("out"),
          py::arg("q"), py::arg("k"), py::arg("v"), py::arg("cu_seqlens"), py::arg("scale"),
          "encoder_attention on CUDA tensors (float32, bfloat16 or float16).");
    m.def("greedy_sample_cuda", plain_errors(&rc::greedy_sample), py::arg("logits"),
          "First argmax of each row of float32 CUDA logits -> int64 [bs].");
    m.def("sample_cuda", plain_errors(&rc::sample), py::arg("logits"), py::arg("temperatures"),
          py::arg("top_ps"), py::arg("top_ks"), py::arg("min_ps"), py::arg("seeds"),
          py::arg("steps"), py::arg("frequency_penalties") = py::none(),
          py::arg("presence_penalties") = py::none(), py::arg("repetition_penalties") = py::none(),
          py::arg("output_token_counts") = py::none(), py::arg("logit_bias") = py::none(),
          py::arg("top_logprobs") = -1, py::arg("token_bitmask") = py::none(),
          "sample (the CPU sampler's definition) on CUDA tensors.");
    m.def("apply_token_bitmask_cuda", plain_errors(&rc::apply_token_bitmask_), py::arg("logits"),
          py::arg("token_bitmask"), "apply_token_bitmask_ on CUDA tensors (in place).");
  }
#else
  m.attr("has_cuda") = false;
#endif
}
