/* eval: the résumé extraction answer — its eight entity types, its JSON text
 * (written as the Python recipe writes it, parsed leniently when a model
 * wrote it) — and entity-level precision / recall / F1 against gold answers.
 *
 * Scoring (shared/docs/finetune-semantics.md, Entity types): per record and
 * type, the predicted and gold entity strings are compared as sets (exact
 * string match); tp/fp/fn are summed over the data set; "micro" sums them
 * over the types. Entities under a key that is not one of the eight types
 * (or list items that are not strings) are false positives of the micro
 * score only. P, R or F1 with a zero denominator is 0. An empty string is
 * never an entity.
 *
 * Scoring is strict by default, as the recipe's json.loads would score: an
 * answer that is not a valid JSON object counts as an empty prediction.
 * Lenient scoring recovers what it can from broken answers (never a string
 * the text cut off), and is reported beside the strict score. */
#ifndef YF_EVAL_H
#define YF_EVAL_H

#include "base/util.h"

#define YF_N_TYPES 8

/* In the template's order: 姓名 国籍 种族 职位 教育背景 专业 组织名 地名. */
extern const char *const yf_type_names[YF_N_TYPES];
/* The Resume NER tags they come from: NAME CONT RACE TITLE EDU PRO ORG LOC. */
extern const char *const yf_type_tags[YF_N_TYPES];
int yf_type_from_name(const char *s, size_t n); /* index, -1 if none */
int yf_type_from_tag(const char *s, size_t n);  /* index, -1 if none */
/* A comma-separated list of types, by name (姓名) or tag (NAME), into a
 * bitmask (bit t = yf_type_names[t]). An empty list, an unknown or a
 * repeated type is an error naming it and the known ones. */
int yf_types_parse(const char *list, uint32_t *mask);

typedef enum yf_ans_status {
    YF_ANS_OK = 0,        /* valid JSON object */
    YF_ANS_RECOVERED,     /* not valid JSON; entities recovered from it */
    YF_ANS_UNPARSABLE     /* nothing recoverable: treated as an empty answer */
} yf_ans_status;

typedef struct yf_strlist {
    char **s;             /* [n] malloc'd NUL-terminated strings */
    size_t n, cap;
    size_t *slot;         /* [nslot] open-addressing set: index + 1 into s, 0 empty */
    size_t nslot;         /* 0 or a power of two, kept > 2 n */
} yf_strlist;

/* One answer: per type, its distinct entity strings in order of first appearance. */
typedef struct yf_answer {
    yf_strlist ent[YF_N_TYPES];
    int64_t n_other;      /* items under unknown keys, or not strings */
    yf_ans_status status;
} yf_answer;

void yf_answer_init(yf_answer *a);
void yf_answer_free(yf_answer *a);
/* Adds s[0..n) to type t unless it is already there. */
void yf_answer_add(yf_answer *a, int t, const char *s, size_t n);
/* The answer as JSON text (malloc'd), as Python's
 * json.dumps(answer, ensure_ascii=False) writes it: types in template order,
 * types with no entity left out, e.g. {"姓名": ["张三"], "国籍": ["中国"]}. */
char *yf_answer_format(const yf_answer *a);

/* Parses a model's answer text leniently (len bytes; need not be
 * NUL-terminated). Never fails: valid JSON objects give YF_ANS_OK; otherwise
 * what can be recovered (text around the object, a truncated list/object,
 * missing closing brackets, a missing comma) gives YF_ANS_RECOVERED; else an
 * empty answer with YF_ANS_UNPARSABLE. A string the text cut off is dropped
 * (never an entity). A JSON string holding the answer is unwrapped
 * (YF_ANS_RECOVERED). */
void yf_answer_parse(const char *text, size_t len, yf_answer *out);
/* Strictly: a valid JSON object (whitespace around it allowed) gives
 * YF_ANS_OK; anything else an empty answer with YF_ANS_UNPARSABLE. */
void yf_answer_parse_strict(const char *text, size_t len, yf_answer *out);

/* ---- scores ------------------------------------------------------------ */

typedef struct yf_prf {
    int64_t tp, fp, fn;
    double precision, recall, f1;
} yf_prf;

typedef struct yf_eval_result {
    yf_prf micro;
    yf_prf per_type[YF_N_TYPES];
    int64_t n_records, n_unparsable, n_recovered;
    int64_t n_other;      /* predicted items outside the eight types (in micro.fp) */
    bool lenient;         /* scored with the lenient parser */
    yf_prf strict;        /* the strict micro scores (= micro when !lenient) */
} yf_eval_result;

void yf_eval_init(yf_eval_result *r);
/* Adds one record's counts (pred's status counted too). */
void yf_eval_add(yf_eval_result *r, const yf_answer *pred, const yf_answer *gold);
/* Fills precision / recall / f1 from the counts. */
void yf_eval_finish(yf_eval_result *r);

/* Scores n predicted answer texts against n gold answer texts (the data's
 * "output" strings), strictly. A gold answer that is not a valid JSON object
 * is an error naming gold_name and the record (1-based). */
int yf_eval_score(const char *const *pred, const char *const *gold, size_t n, const char *gold_name,
                  yf_eval_result *out);
/* The same with the lenient parser (out->strict holds the strict micro scores). */
int yf_eval_score_lenient(const char *const *pred, const char *const *gold, size_t n, const char *gold_name,
                          yf_eval_result *out);

/* The entity strings of the predicted answers pred[0..n) (parsed leniently)
 * that are not substrings of their record's input: what a model invented. */
int64_t yf_eval_not_in_input(const char *const *pred, const char *const *inputs, size_t n);

/* Writes the JSON report: {"micro": {precision, recall, f1, tp, fp, fn},
 * "per_type": {"姓名": {...}, ...}, "records", "unparsable", "recovered",
 * "other_fp", "scoring": "strict"|"lenient", and when lenient
 * "strict_micro": {...}}; atomically. */
int yf_eval_write_report(const yf_eval_result *r, const char *path);
/* The human table: one row per type, then micro, then the answer counts. */
void yf_eval_print(const yf_eval_result *r, FILE *f);

/* Reads a predictions file: one answer a line, either a JSON string (the
 * model's text) or the answer written directly (an object, or any text, which
 * is then parsed leniently). A final newline does not make an extra line.
 * *texts: [*n] malloc'd strings; free with yf_strv_free. */
int yf_eval_read_predictions(const char *path, char ***texts, size_t *n);
void yf_strv_free(char **v, size_t n);

#endif
