// A tour of the normalization layers: every normalization snippet of the source documents run in
// tapegrad and printed as PyTorch prints it (BatchNorm1d/2d, LayerNorm, InstanceNorm2d, GroupNorm,
// SyncBatchNorm in a world of one, the documents' hand-written GroupNorm and their hand computation of
// BatchNorm2d). tests/test_norm_tour.cpp checks the output against PyTorch's.
//   build/examples/norm_tour
#include "common/norm_tour.h"

#include <iostream>

int main() {
  tapegrad::examples::norm_tour(std::cout);
  return 0;
}
