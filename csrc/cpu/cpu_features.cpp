#include "cpu/cpu_features.h"

#include <atomic>
#include <cstdlib>
#include <stdexcept>

namespace radixserve::cpu {
namespace {

CpuFeatures detect() {
  CpuFeatures f;
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  // __builtin_cpu_supports also checks that the OS saves the wide registers (XGETBV).
  f.avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  f.avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  f.avx512_bf16 = f.avx512 && __builtin_cpu_supports("avx512bf16");
  f.avx512_vnni = f.avx512 && __builtin_cpu_supports("avx512vnni");
#endif
#ifdef RADIXSERVE_AVX512_EMULATION
  // A test build: the AVX-512 kernels run on SIMDe's emulation, built for AVX2.
  f.avx512 = f.avx512_bf16 = f.avx512_vnni = f.avx2;
  f.avx512_emulated = f.avx2;
#endif
  return f;
}

Isa parse(const std::string& name) {
  if (name == "generic") return Isa::kGeneric;
  if (name == "avx2") return Isa::kAvx2;
  if (name == "avx512") return Isa::kAvx512;
  throw std::invalid_argument("unknown ISA '" + name +
                              "': expected 'auto', 'generic', 'avx2' or 'avx512'");
}

Isa initial_isa() {
  const Isa best = best_isa();
  const char* env = std::getenv("RADIXSERVE_ISA");
  if (env == nullptr || *env == '\0' || std::string(env) == "auto") return best;
  try {
    const Isa want = parse(env);
    // An environment variable can only lower the ISA; asking for more than the CPU has
    // falls back to the best available rather than crashing later.
    return static_cast<int>(want) < static_cast<int>(best) ? want : best;
  } catch (const std::invalid_argument&) {
    return best;
  }
}

std::atomic<int>& current() {
  static std::atomic<int> isa{static_cast<int>(initial_isa())};
  return isa;
}

}  // namespace

const CpuFeatures& detected_features() {
  static const CpuFeatures f = detect();
  return f;
}

Isa best_isa() {
  const CpuFeatures& f = detected_features();
  if (f.avx512) return Isa::kAvx512;
  if (f.avx2) return Isa::kAvx2;
  return Isa::kGeneric;
}

Isa active_isa() { return static_cast<Isa>(current().load(std::memory_order_relaxed)); }

void set_isa(const std::string& name) {
  if (name == "auto") {
    current().store(static_cast<int>(best_isa()));
    return;
  }
  const Isa want = parse(name);
  if (static_cast<int>(want) > static_cast<int>(best_isa())) {
    throw std::invalid_argument(std::string("ISA '") + name + "' is not supported by this CPU");
  }
  current().store(static_cast<int>(want));
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kAvx512:
      return "avx512";
    case Isa::kAvx2:
      return "avx2";
    default:
      return "generic";
  }
}

}  // namespace radixserve::cpu
