// gradcheck: compares the tape's gradients with central finite differences.
//
// Uses a *random* upstream gradient v and checks d(sum(v * f(x)))/dx: with a plain sum() upstream,
// sum(softmax(x)) and sum(batch_norm(x)) have identically zero gradients, so errors in exactly the ops
// that matter most would go unseen. Inputs should be float64; only inputs that require grad are checked.
#pragma once

#include "tensor.h"

#include <functional>
#include <vector>

namespace tapegrad {

struct GradcheckOptions {
  double eps = 1e-6;    // finite-difference step
  double atol = 1e-5;
  double rtol = 1e-3;
  uint64_t seed = 0;    // for the random upstream gradient
  bool raise = true;    // throw tapegrad::Error describing the first mismatch (else return false)
};

using GradcheckFn = std::function<std::vector<Tensor>(const std::vector<Tensor>&)>;

// fn maps the inputs to one or more outputs; each floating output gets its own random upstream gradient.
bool gradcheck(const GradcheckFn& fn, const std::vector<Tensor>& inputs, const GradcheckOptions& options = {});
// Convenience for a single-output function.
bool gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& fn, const std::vector<Tensor>& inputs,
               const GradcheckOptions& options = {});

// Second order: checks the gradient of <grad(f)(x), u> computed with create_graph against finite
// differences of the first-order gradients.
bool gradgradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& fn, const std::vector<Tensor>& inputs,
                   const GradcheckOptions& options = {});

}  // namespace tapegrad
