// All of tapegrad in one include: #include <tapegrad/tapegrad.h>.
//
// Every public header is reachable from here (a test checks it). Op families come through
// core/ops.h, which each family adds itself to; a new area adds one line below.
#pragma once

// ---- core: tensors, ops, the tape ----
#include "core/autograd.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/gradcheck.h"
#include "core/ops.h"
#include "core/ops/rnn.h"
#include "core/print.h"
#include "core/random.h"
#include "core/serialize.h"
#include "core/tensor.h"
#include "core/version.h"

// ---- layers (namespace tapegrad::nn) ----
#include "layers/activation.h"
#include "layers/container.h"
#include "layers/conv.h"
#include "layers/init.h"
#include "layers/linear.h"
#include "layers/loss.h"
#include "layers/module.h"
#include "layers/normalization.h"
#include "layers/rnn.h"

// ---- optimizers, learning-rate schedulers, gradient clipping (namespace tapegrad::optim) ----
#include "optim/optim.h"

// ---- data (namespace tapegrad::data) ----
#include "data/dataloader.h"
#include "data/dataset.h"
#include "data/idx.h"
#include "data/image.h"
#include "data/python_random.h"
#include "data/transforms.h"
#include "data/wordlists.h"

// ---- distributed training (namespace tapegrad::dist) ----
#include "dist/ddp.h"
#include "dist/process_group.h"
#include "dist/sync_batch_norm.h"
