/* config.json: yf_config_load on arbitrary bytes; a config that loads is
 * written back and must load to the same values. */
#include <stdint.h>
#include <string.h>

#include "formats/config.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    yf_config c, d;
    if (yf_config_load(yz_file(0, data, n), &c) != 0) return 0;
    char path[256];
    snprintf(path, sizeof path, "%s/config.json", yz_dir());
    if (yf_config_save(path, &c) != 0 || yf_config_load(path, &d) != 0) __builtin_trap();
    if (c.vocab_size != d.vocab_size || c.hidden_size != d.hidden_size || c.num_hidden_layers != d.num_hidden_layers ||
        c.eod_token != d.eod_token || c.pad_token_id != d.pad_token_id || strcmp(c.torch_dtype, d.torch_dtype))
        __builtin_trap();
    return 0;
}
