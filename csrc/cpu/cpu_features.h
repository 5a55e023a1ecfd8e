// Run-time ISA detection and selection for the CPU kernels.
//
// Kernels come in up to three builds: AVX-512 (sources *_avx512.cpp, compiled with AVX-512
// flags), AVX2+FMA (sources *_avx2.cpp, compiled via a target pragma) and a portable scalar
// build. active_isa() picks the best one this CPU supports; the environment variable
// RADIXSERVE_ISA=generic|avx2|avx512 (read once) or set_isa() forces a lower one, for tests.
#pragma once

#include <string>

namespace radixserve::cpu {

enum class Isa { kGeneric = 0, kAvx2 = 1, kAvx512 = 2 };

struct CpuFeatures {
  bool avx2 = false;  // with FMA
  bool avx512 = false;  // F + BW + VL + DQ
  bool avx512_bf16 = false;
  bool avx512_vnni = false;  // vpdpwssd (int16 linear)
  bool avx512_emulated = false;  // a test build: AVX-512 kernels on SIMDe (avx512_emulation.h)
};

// What the CPU (and OS) supports.
const CpuFeatures& detected_features();

// The best ISA this CPU supports.
Isa best_isa();

// The ISA the kernels use now: best_isa(), lowered by RADIXSERVE_ISA or set_isa().
Isa active_isa();

// "auto" restores best_isa(); "generic", "avx2", "avx512" force that ISA. Throws
// std::invalid_argument for an unknown name or an ISA this CPU lacks.
void set_isa(const std::string& name);

const char* isa_name(Isa isa);

}  // namespace radixserve::cpu
