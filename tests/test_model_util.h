/* Helpers shared by the model, LoRA and gradient-check tests. */
#ifndef YT_MODEL_UTIL_H
#define YT_MODEL_UTIL_H

#include "lora/lora.h"
#include "model/model.h"

/* Checks that a library call returned 0, printing its error message (the call
 * is made before the message is read). */
#define CHECK_OK(expr)                                                  \
    do {                                                                \
        int rc_ = (expr);                                               \
        CHECK(rc_ == 0, "%s -> %s", #expr, rc_ ? yf_last_error() : ""); \
    } while (0)

/* A batch file: input_ids and labels (I64 [B, T]); the table keeps any other tensors. */
typedef struct yt_batch {
    yf_table tab;
    const int64_t *ids, *labels;
    int64_t B, T;
} yt_batch;
int yt_batch_load(yt_batch *b, const char *path);
void yt_batch_free(yt_batch *b);

/* An in-memory Yuan config (eod 3, reset_attention_mask on, tied unless told). */
yf_config yt_config(int64_t V, int64_t D, int64_t H, int64_t I, int64_t L, int64_t maxpos, bool tied);
/* A random model: HF init, then every non-norm weight multiplied by wscale and
 * norm weights set to 1 + U(-0.3, 0.3) when wscale != 1 (for finite
 * differences, which want a non-trivial network). */
yf_model *yt_random_model(const yf_config *cfg, uint64_t seed, yf_dtype dt, float wscale, const yf_model_opts *o);
/* Same weights as a table (for writing a model directory). */
int yt_random_table(const yf_config *cfg, uint64_t seed, yf_dtype dt, float wscale, yf_table *tab);
/* Writes config.json + model.safetensors of a random model into dir. */
int yt_write_model_dir(const char *dir, const yf_config *cfg, uint64_t seed, yf_dtype dt, float wscale);
/* Random ids in [0, V) with <eod> (3) sprinkled in, labels = ids with some -100. */
void yt_random_batch(int64_t *ids, int64_t *labels, int64_t B, int64_t T, int64_t V, uint64_t seed);
/* Fills A, B (and m) of every module with random values (B non-zero). */
void yt_randomize_lora(yf_lora *lo, uint64_t seed, float scale);

/* The golden tiny model (../shared/golden/yuan-tiny), or NULL with a failed check. */
yf_model *yt_load_tiny(void);

#endif
