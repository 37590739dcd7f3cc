/* data: training data for the fine-tuning recipe (shared/docs/
 * finetune-semantics.md): records {"input", "output"} → token ids and labels
 * → padded [B, T] batches; a pre-tokenised safetensors form; the prompt ids
 * for inference.
 *
 * Per record (as the recipe's process_func does):
 *   prompt    = template(input) + "<sep>"      labels -100
 *   answer    = output + "<eod>"               labels = ids
 *   input_ids = encode(prompt) ++ encode(answer), both truncated to max_length.
 * Each piece is encoded on its own: the tokenizer splits on special tokens, so
 * "<sep>" and "<eod>" become their ids.
 *
 * Typical use (the trainer):
 *   yf_records recs;  yf_data_load("train.jsonl", &recs);
 *   yf_template tpl;  yf_template_load("resume", &tpl);
 *   yf_encoder enc;   yf_encoder_from_tokenizer(tok, &enc);
 *   yf_dataset ds;    yf_dataset_build(&recs, &tpl, &enc, 384, &ds);
 *   yf_batch b;       yf_batch_make(&ds, idx, 12, &b);   // idx: 12 example indices
 *   ... b.input_ids / b.labels [b.B, b.T] ...
 *   yf_batch_free(&b); yf_dataset_free(&ds); ...
 * Every function returning int gives 0, or -1 with yf_last_error() set. */
#ifndef YF_DATA_H
#define YF_DATA_H

#include "base/util.h"

#define YF_IGNORE_INDEX (-100) /* label of a token that is not scored */
#define YF_DEFAULT_MAX_LENGTH 384

/* ---- records ------------------------------------------------------------ */

typedef struct yf_record {
    char *input;          /* UTF-8, NUL-terminated */
    char *output;         /* the answer text (a JSON object written as a string) */
    int64_t line;         /* line of the file where the record starts */
} yf_record;

typedef struct yf_records {
    yf_record *r;         /* [n] */
    size_t n;
} yf_records;

/* Reads a JSON array of records or JSON Lines (one record a line, blank lines
 * skipped). Every record must be an object with string "input" and "output"
 * (other keys are ignored) in UTF-8. Any malformed record is an error naming
 * the file and its line; nothing is returned then. */
int yf_data_load(const char *path, yf_records *out);
void yf_records_free(yf_records *r);

/* ---- templates ---------------------------------------------------------- */

/* The résumé extraction template of the recipe; "query" is replaced by the input. */
extern const char yf_resume_template[];

typedef struct yf_template {
    char *text;           /* NULL: no template (the prompt is the input as is) */
    char *slot;           /* the placeholder replaced by the input */
} yf_template;

/* spec: "resume" (the built-in template), "none", or the path of a template
 * file with an {input} placeholder. */
int yf_template_load(const char *spec, yf_template *out);
void yf_template_free(yf_template *t);
/* template(input), malloc'd: every placeholder replaced by input, then
 * surrounding ASCII whitespace stripped (the recipe's .strip()); with no
 * template, input unchanged. */
char *yf_template_apply(const yf_template *t, const char *input);

/* ---- encoding ----------------------------------------------------------- */

/* How text becomes ids. A function table so that the pipeline can be tested
 * without the real tokenizer; yf_encoder_from_tokenizer gives the real one. */
typedef struct yf_encoder {
    /* Encodes text[0..len) (special tokens split out), *ids malloc'd. */
    int (*encode)(const void *ctx, const char *text, size_t len, int64_t **ids, size_t *n);
    const void *ctx;
    int64_t eod_id;       /* "<eod>": the pad id of batches */
} yf_encoder;

struct yf_tokenizer;
/* An encoder over a loaded tokenizer (data_tok.c); fails when it has no <eod>. */
int yf_encoder_from_tokenizer(const struct yf_tokenizer *tok, yf_encoder *out);

/* The inference prompt: encode(template(input) + "<sep>"); *ids malloc'd. */
int yf_prompt_ids(const yf_template *t, const yf_encoder *enc, const char *input, int64_t **ids, size_t *n);

/* ---- examples ----------------------------------------------------------- */

typedef struct yf_example {
    int64_t *ids;         /* [len] */
    int64_t *labels;      /* [len]: -100 on the prompt, = ids on the answer */
    int64_t len;
    int64_t prompt_len;   /* ids of the prompt kept (≤ len) */
} yf_example;

/* ids = prompt ++ answer and labels, truncated to max_length (≤ 0: no limit).
 * Returns true when it was truncated. */
bool yf_example_make(yf_example *ex, const int64_t *prompt, size_t np, const int64_t *answer, size_t na,
                     int64_t max_length);
void yf_example_free(yf_example *ex);

typedef struct yf_dataset {
    yf_example *ex;       /* [n] */
    size_t n;
    int64_t pad_id;       /* <eod> */
    int64_t max_length;   /* the truncation used (≤ 0: none) */
    int64_t n_truncated;  /* examples cut to max_length */
    int64_t n_no_answer;  /* examples whose answer was cut off entirely (nothing scored) */
    int64_t longest;      /* the longest example, after truncation */
} yf_dataset;

/* Tokenises every record (prompt and answer as above). */
int yf_dataset_build(const yf_records *recs, const yf_template *t, const yf_encoder *enc, int64_t max_length,
                     yf_dataset *out);
void yf_dataset_free(yf_dataset *ds);

/* Pre-tokenised file (safetensors): input_ids [N, T] and labels [N, T] I64,
 * right-padded to the longest example T with pad_id / -100, lengths [N] I64
 * and pad_id [1] I64 (metadata: max_length, and format =
 * YF_PRETOKENISED_FORMAT: its ids are tokenizer ids). Written atomically. */
#define YF_PRETOKENISED_FORMAT "yuanft pre-tokenised data"
int yf_dataset_save(const yf_dataset *ds, const char *path);
/* Reads such a file back. Without a lengths tensor (a file written elsewhere)
 * every row keeps its full width T; without a pad_id tensor, pad_id_default
 * is the pad id. */
int yf_dataset_load(const char *path, int64_t pad_id_default, yf_dataset *out);

/* ---- batches ------------------------------------------------------------ */

typedef struct yf_batch {
    int64_t B, T;         /* rows, and the longest selected example */
    int64_t *input_ids;   /* [B, T], right-padded with the pad id */
    int64_t *labels;      /* [B, T], right-padded with -100 */
    int64_t *lengths;     /* [B] tokens before the padding */
    int64_t n_scored;     /* labels[b][t] != -100 with t ≥ 1: the tokens the
                           * next-token loss scores (the shift drops t = 0) */
} yf_batch;

/* The batch of examples idx[0..n) (indices into ds, repeats allowed). */
void yf_batch_make(const yf_dataset *ds, const size_t *idx, size_t n, yf_batch *out);
void yf_batch_free(yf_batch *b);

#endif
