/* A PEFT adapter directory: the input is adapter_config.json, the separator
 * "\n--yz--\n", then adapter_model.safetensors; yf_lora_load reads them for
 * the golden tiny model's config (V=320, D=64, H=4, I=96, L=2). */
#include <stdint.h>

#include "lora/lora.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    const uint8_t *a, *b;
    size_t na, nb;
    yz_split(data, n, &a, &na, &b, &nb);
    const char *dir = yz_dir();
    yz_write(dir, "adapter_config.json", a, na);
    yz_write(dir, "adapter_model.safetensors", b, nb);
    yf_config cfg = {.vocab_size = 320, .hidden_size = 64, .intermediate_size = 96, .num_hidden_layers = 2,
                     .num_attention_heads = 4, .max_position_embeddings = 512, .rms_norm_eps = 1e-6f,
                     .rope_theta = 10000, .eod_token = 3, .sep_token = 4, .pad_token_id = 3};
    yf_lora lo;
    if (yf_lora_load(dir, &cfg, &lo) == 0) yf_lora_free(&lo);
    return 0;
}
