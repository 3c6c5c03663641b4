// In-place writes that overwrite a tensor (internal to the library).
#pragma once

#include "tensor.h"

#include <functional>
#include <string_view>

namespace tapegrad::detail {

// Runs write(), which overwrites every element of `self` with values that do not depend on its old
// ones (fill_, zero_, copy_, uniform_, normal_), after the in-place checks, and bumps the version.
// When self has history (grad mode on), that history continues through a node named `op` that passes
// a zero gradient back, as PyTorch: the old values no longer reach anything computed from self.
void overwrite_inplace(Tensor& self, std::string_view op, const std::function<void()>& write);

}  // namespace tapegrad::detail
