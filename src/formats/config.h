/* config: the Hugging Face config.json of a Yuan model. */
#ifndef YF_CONFIG_H
#define YF_CONFIG_H

#include "base/util.h"

typedef struct yf_config {
    int64_t vocab_size;          /* V */
    int64_t hidden_size;         /* D */
    int64_t intermediate_size;   /* I */
    int64_t num_hidden_layers;   /* L */
    int64_t num_attention_heads; /* H; head_dim = D / H */
    int64_t max_position_embeddings;
    float rms_norm_eps;
    float rope_theta;            /* 10000 unless the config says otherwise */
    bool tie_word_embeddings;
    bool reset_attention_mask;
    bool use_loss_mask;
    int64_t eod_token;           /* <eod> id: end of text, attention reset */
    int64_t sep_token;
    int64_t pad_token_id;
    char torch_dtype[16];        /* "bfloat16", "float32", ... */
} yf_config;

/* Parses config.json. Errors name the file and the field: missing required
 * fields (vocab_size, hidden_size, intermediate_size, num_hidden_layers,
 * num_attention_heads), non-positive sizes, hidden_size % heads != 0, odd head_dim. */
int yf_config_load(const char *path, yf_config *cfg);
int yf_config_parse(const char *json_text, const char *path_for_errors, yf_config *cfg);
/* Writes config.json in the HF layout (Yuan fields included), atomically. */
int yf_config_save(const char *path, const yf_config *cfg);
/* Checks the relations between fields; message names path_for_errors. */
int yf_config_validate(const yf_config *cfg, const char *path_for_errors);

#endif
