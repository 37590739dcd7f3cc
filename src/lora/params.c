#include "lora/params.h"

#include <stdlib.h>

#include "formats/weights.h"

void yf_proj_dims(const yf_config *c, yf_proj p, int64_t *in, int64_t *out) {
    int64_t D = c->hidden_size, I = c->intermediate_size;
    *in = p == YF_DOWN ? I : D;
    *out = (p == YF_GATE || p == YF_UP) ? I : D;
}

int yf_count_params(const yf_config *cfg, const yf_lora_cfg *lc, yf_param_counts *out) {
    out->base = out->adapter = 0;
    yf_wspec *specs;
    int64_t n = yf_weight_specs(cfg, &specs);
    for (int64_t i = 0; i < n; i++) {
        int64_t k = 1;
        for (int d = 0; d < specs[i].ndim; d++) k *= specs[i].shape[d];
        out->base += k;
    }
    free(specs);
    if (!lc) return 0;
    if (lc->r <= 0) return yf_errorf("LoRA rank r must be positive (got %d)", lc->r);
    if (!lc->targets) return yf_errorf("no LoRA target modules");
    for (int p = 0; p < YF_NPROJ; p++) {
        if (!(lc->targets & (1u << p))) continue;
        int64_t in, o;
        yf_proj_dims(cfg, (yf_proj)p, &in, &o);
        int64_t per = (int64_t)lc->r * (in + o) + (lc->use_dora ? o : 0);
        out->adapter += per * cfg->num_hidden_layers;
    }
    return 0;
}

/* 9043968 -> "9,043,968" */
static void commas(char *buf, size_t cap, int64_t v) {
    char raw[32], tmp[48];
    int n = snprintf(raw, sizeof raw, "%lld", (long long)(v < 0 ? -v : v)), k = 0;
    if (v < 0) tmp[k++] = '-';
    for (int i = 0; i < n; i++) {
        if (i && (n - i) % 3 == 0) tmp[k++] = ',';
        tmp[k++] = raw[i];
    }
    tmp[k] = 0;
    snprintf(buf, cap, "%s", tmp);
}

void yf_format_trainable(char *buf, size_t cap, int64_t trainable, int64_t all) {
    char t[48], a[48];
    commas(t, sizeof t, trainable);
    commas(a, sizeof a, all);
    snprintf(buf, cap, "trainable params: %s || all params: %s || trainable%%: %.4f", t, a,
             all > 0 ? 100.0 * (double)trainable / (double)all : 0.0);
}
