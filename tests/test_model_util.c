#include "test_model_util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "model/model_internal.h"
#include "formats/safetensors.h"
#include "formats/weights.h"

int yt_batch_load(yt_batch *b, const char *path) {
    memset(b, 0, sizeof *b);
    yf_table_init(&b->tab);
    if (yf_st_load(path, &b->tab) != 0) return -1;
    const yf_tensor *i = yf_table_find(&b->tab, "input_ids"), *l = yf_table_find(&b->tab, "labels");
    if (!i || !l || i->dtype != YF_I64 || l->dtype != YF_I64 || i->ndim != 2 || l->ndim != 2 ||
        i->shape[0] != l->shape[0] || i->shape[1] != l->shape[1])
        return yf_errorf("%s: needs input_ids and labels, I64 [B, T]", path);
    b->ids = i->data;
    b->labels = l->data;
    b->B = i->shape[0];
    b->T = i->shape[1];
    return 0;
}

void yt_batch_free(yt_batch *b) { yf_table_free(&b->tab); }

yf_config yt_config(int64_t V, int64_t D, int64_t H, int64_t I, int64_t L, int64_t maxpos, bool tied) {
    yf_config c;
    memset(&c, 0, sizeof c);
    c.vocab_size = V;
    c.hidden_size = D;
    c.num_attention_heads = H;
    c.intermediate_size = I;
    c.num_hidden_layers = L;
    c.max_position_embeddings = maxpos;
    c.rms_norm_eps = 1e-6f;
    c.rope_theta = 10000;
    c.tie_word_embeddings = tied;
    c.reset_attention_mask = true;
    c.eod_token = 3;
    c.sep_token = 4;
    c.pad_token_id = 3;
    snprintf(c.torch_dtype, sizeof c.torch_dtype, "float32");
    return c;
}

int yt_random_table(const yf_config *cfg, uint64_t seed, yf_dtype dt, float wscale, yf_table *tab) {
    if (yf_weights_init_random(cfg, seed, YF_F32, tab) != 0) return -1;
    yf_rng rng;
    yf_rng_seed(&rng, seed ^ 0x5eed);
    for (int i = 0; i < tab->n; i++) {
        yf_tensor *t = &tab->t[i];
        float *d = t->data;
        int64_t n = yf_tensor_numel(t);
        bool norm = strstr(t->name, "norm") != NULL;
        if (wscale != 1.0f)
            for (int64_t k = 0; k < n; k++)
                d[k] = norm ? 1.0f + 0.6f * ((float)yf_rng_uniform(&rng) - 0.5f) : d[k] * wscale;
        if (dt == YF_BF16) {
            uint16_t *h = yf_aligned_alloc((size_t)n * 2);
            for (int64_t k = 0; k < n; k++) h[k] = yf_f32_to_bf16(d[k]);
            yf_table_own(tab, h);
            t->data = h;
            t->dtype = YF_BF16;
            t->nbytes = (size_t)n * 2;
        }
    }
    return 0;
}

yf_model *yt_random_model(const yf_config *cfg, uint64_t seed, yf_dtype dt, float wscale, const yf_model_opts *o) {
    yf_table tab;
    if (yt_random_table(cfg, seed, dt, wscale, &tab) != 0) return NULL;
    yf_model *m = NULL;
    if (yf_model_from_table(cfg, &tab, o, "random model", &m) != 0) return NULL;
    return m;
}

int yt_write_model_dir(const char *dir, const yf_config *cfg, uint64_t seed, yf_dtype dt, float wscale) {
    yf_table tab;
    if (yt_random_table(cfg, seed, dt, wscale, &tab) != 0) return -1;
    if (yf_mkdir_p(dir) != 0) return -1;
    char *c = yf_path_join(dir, "config.json"), *w = yf_path_join(dir, "model.safetensors");
    int rc = yf_config_save(c, cfg);
    if (rc == 0) rc = yf_st_save(w, tab.t, tab.n, NULL);
    free(c);
    free(w);
    yf_table_free(&tab);
    return rc;
}

void yt_random_batch(int64_t *ids, int64_t *labels, int64_t B, int64_t T, int64_t V, uint64_t seed) {
    yf_rng rng;
    yf_rng_seed(&rng, seed);
    for (int64_t i = 0; i < B * T; i++) {
        double u = yf_rng_uniform(&rng);
        ids[i] = u < 0.1 ? 3 : (int64_t)(yf_rng_u64(&rng) % (uint64_t)V);
        labels[i] = yf_rng_uniform(&rng) < 0.2 ? -100 : ids[i];
    }
}

void yt_randomize_lora(yf_lora *lo, uint64_t seed, float scale) {
    yf_rng rng;
    yf_rng_seed(&rng, seed);
    for (int i = 0; i < lo->store.n; i++) {
        yf_tensor *t = &lo->store.t[i];
        float *d = t->data;
        bool mag = strstr(t->name, "magnitude") != NULL;
        for (int64_t k = 0; k < yf_tensor_numel(t); k++)
            d[k] = mag ? 1.0f + (float)yf_rng_uniform(&rng) : scale * yf_rng_normal(&rng);
    }
}

yf_model *yt_load_tiny(void) {
    yf_model *m = NULL;
    yf_model_opts o = {0};
    if (yf_model_load(yt_shared_path("golden/yuan-tiny"), &o, &m)) {
        CHECK(0, "load: %s", yf_last_error());
        return NULL;
    }
    return m;
}
