// The normalization snippets of the source documents, run in tapegrad and printed the way PyTorch
// prints them (examples/norm_tour.cpp is the program; tests/test_norm_tour.cpp checks every printed
// value against the same snippets run in PyTorch, tests/fixtures/gen_norm_tour.py).
#pragma once

#include <tapegrad/core/tensor.h>

#include <cstdint>
#include <ostream>

namespace tapegrad::examples {

// Inputs both tapegrad and PyTorch reproduce exactly (neither can run the other's generator):
// element i = (Σ_{j<12} top20(splitmix64(seed·2^40 + 12·i + j)) - 6·2^20) / 2^20, float32.
// The sum of 12 uniforms: mean 0, variance 1, every value an exact float32.
Tensor tour_randn(const Shape& shape, uint64_t seed);

// Runs every snippet and writes what it prints to `out`.
void norm_tour(std::ostream& out);

}  // namespace tapegrad::examples
