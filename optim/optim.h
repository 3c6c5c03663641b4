// Optimizers, learning-rate schedulers and gradient clipping (namespace tapegrad::optim).
#pragma once

#include "adagrad.h"
#include "adam.h"
#include "clip_grad.h"
#include "lr_scheduler.h"
#include "optimizer.h"
#include "rmsprop.h"
#include "sgd.h"
