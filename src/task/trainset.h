/* trainset: the training examples `yuanft train` reads, as the padded
 * matrices input_ids / labels [N, T] (I64; label -100 = not scored), from
 * either form of data file:
 *   - records (.jsonl or .json of {"input", "output"}): tokenised as the
 *     recipe does (task/data.h: template, <sep>, <eod>, truncation), mapped
 *     through the model's vocab_map, right-padded with the pad id and -100;
 *   - pre-tokenised .safetensors with input_ids and labels [N, T] I64 (and
 *     optionally attention_mask [N, T]), e.g. from `yuanft data tokenize`.
 * Every id is checked against the model's vocabulary, and every row's length
 * against its max_position_embeddings.
 *
 *   yf_trainset ts;
 *   yf_trainset_opts o = {.model_dir = dir, .template_spec = "resume", .max_length = 384};
 *   if (yf_trainset_load("train.jsonl", &cfg, &o, &ts)) ... yf_last_error() ...
 *   ... ts.ids / ts.labels [ts.N, ts.T], ts.len [ts.N] ...
 *   yf_trainset_free(&ts);   // also after a failed load */
#ifndef YF_TRAINSET_H
#define YF_TRAINSET_H

#include "base/tensor.h"
#include "formats/config.h"

/* How records become ids (unused for a safetensors file). */
typedef struct yf_trainset_opts {
    const char *model_dir;     /* the model: its tokenizer.model and vocab_map.safetensors */
    const char *tokenizer;     /* tokenizer.model; NULL: MODEL_DIR/tokenizer.model */
    const char *template_spec; /* yf_template_load's spec: resume, none, or a file with {input} */
    int64_t max_length;        /* truncate each example to this many tokens (≤ 0: no limit) */
    bool train_on_inputs;      /* label the prompt's tokens too (the recipe scores only the answer) */
} yf_trainset_opts;

typedef struct yf_trainset {
    yf_table tab;                /* owns the tensors */
    const int64_t *ids, *labels; /* [N, T] */
    int64_t N, T;
    int64_t *len;                /* [N] positions that matter: up to the last scored label (or
                                  * attention_mask position), at least 1. Positions after it
                                  * cannot change the loss of a causal model, so batches are
                                  * cut there: HF's pad-to-longest, recovered */
    /* records only (0 / false for a safetensors file): what tokenising did,
     * set as soon as it is done, so also when a later check fails */
    int64_t n_records;           /* = N */
    int64_t n_truncated;         /* examples cut to max_length */
    bool vocab_mapped;           /* ids went through the model's vocab_map */
} yf_trainset;

/* Loads and checks path (records when it ends in .jsonl or .json, else
 * safetensors) for a model of config cfg. Returns 0, or -1 with
 * yf_last_error() naming the file and the fix; out must be freed either way. */
int yf_trainset_load(const char *path, const yf_config *cfg, const yf_trainset_opts *o, yf_trainset *out);
void yf_trainset_free(yf_trainset *ts);
/* Whether path is read as records (.jsonl or .json) rather than safetensors. */
bool yf_trainset_is_text(const char *path);

#endif
