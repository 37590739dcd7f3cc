/* extract: the résumé extraction task at inference — prompt each input with
 * the template + "<sep>", generate greedily to <eod> in batches, and return
 * the model's answer text (special tokens removed), ready for the lenient
 * answer parser of eval.h. */
#ifndef YF_EXTRACT_H
#define YF_EXTRACT_H

#include "task/data.h"
#include "model/generate.h"
#include "lora/lora.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "formats/vocab_map.h"

typedef struct yf_extractor {
    yf_model *model;
    const yf_lora *lora;          /* or NULL */
    const yf_tokenizer *tok;
    const yf_vocab_map *vmap;     /* identity when n = 0 */
    yf_template tpl;              /* the prompt template (as in training) */
    int64_t max_new_tokens;       /* answer length cap (default 128) */
    int64_t max_length;           /* prompt truncation (default 384, the recipe's) */
    int64_t batch;                /* prompts decoded together (default 16) */
    bool progress;                /* a progress bar on stderr */
    bool no_prefix_cache;         /* prefill every prompt whole (comparisons) instead of
                                   * computing the prompts' common prefix (the template) once */
    size_t prefix_cache_bytes;    /* the prefix cache's budget (0: 512 MiB) */
    yf_gen_stats stats;           /* out: prefill and decode totals of the run */
} yf_extractor;

/* answers[n] (malloc'd strings; free with yf_strv_free from eval.h). */
int yf_extract_run(yf_extractor *x, const char *const *inputs, size_t n, char ***answers);

#endif
