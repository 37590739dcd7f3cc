/* yuanft: fine-tuning and inference for Yuan 2.0 models, in C.
 * Public API: the module headers below (compile with -Iinclude -Isrc).
 * Conventions: functions return 0 on success, -1 on error with a message from
 * yf_last_error(); sizes are int64_t / size_t; weights are [out, in]. */
#ifndef YUANFT_H
#define YUANFT_H

#define YUANFT_VERSION "0.1.0"

#include "base/util.h"
#include "base/tensor.h"
#include "formats/config.h"
#include "formats/safetensors.h"
#include "formats/torch_pickle.h"
#include "formats/checkpoint.h"
#include "formats/weights.h"
#include "tokenizer/tokenizer.h"
#include "lora/lora.h"
#include "model/model.h"

#endif
