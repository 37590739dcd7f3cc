/* extract: the résumé extraction task at inference — prompt each input with
 * the template + "<sep>", generate greedily to <eod> in batches, and return
 * the model's answer text (special tokens removed), ready for the answer
 * parser of eval.h. By default the decoding is constrained (constrain.h):
 * every answer is a complete JSON object in the training format whose
 * strings are verbatim substrings of its input. */
#ifndef YF_EXTRACT_H
#define YF_EXTRACT_H

#include "task/data.h"
#include "model/generate.h"
#include "lora/lora.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "formats/vocab_map.h"
#include "task/constrain.h"

typedef enum yf_constrain_mode {
    YF_CONSTRAIN_SPANS = 0, /* the training format, every string a span of the input (the default) */
    YF_CONSTRAIN_SCHEMA,    /* the training format, strings free */
    YF_CONSTRAIN_NONE       /* free-running generation */
} yf_constrain_mode;

/* "spans", "schema" or "none"; an error naming --constrain otherwise. */
int yf_constrain_mode_parse(const char *s, yf_constrain_mode *out);

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
    yf_constrain_mode constrain;  /* YF_CONSTRAIN_SPANS when zeroed */
    uint32_t types;               /* the answer's keys: bit t = yf_type_names[t] (yf_types_parse); 0 = all eight */
    const yf_cvocab *cvocab;      /* the model's vocabulary as bytes, built once by a caller that
                                   * extracts often (yf_cvocab_build(tok, vmap, vocab_size)); NULL:
                                   * built for each call */
} yf_extractor;

/* answers[n] (malloc'd strings; free with yf_strv_free from eval.h). */
int yf_extract_run(yf_extractor *x, const char *const *inputs, size_t n, char ***answers);

/* The text of an answer's ids (special tokens dropped) followed by tail, the
 * constraint's completion of an answer the model could not finish (NULL:
 * none). With a tail the ids' byte pieces are taken as they are: an answer
 * cut inside a character (its first byte pieces spelled, the rest in the
 * tail) becomes that character, not U+FFFD and stray bytes. *text is
 * malloc'd. */
int yf_answer_text(const yf_tokenizer *tok, const int64_t *ids, size_t n, const char *tail, char **text, size_t *len);

#endif
