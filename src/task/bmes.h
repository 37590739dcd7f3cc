/* bmes: the Resume NER corpus (one "CHARACTER TAG" a line, a blank line
 * between sentences; tags O and B-/M-/E-/S-X with X one of NAME CONT RACE
 * TITLE EDU PRO ORG LOC) turned into the recipe's training records
 * {"input": sentence, "output": answer JSON} (eval.h, yf_answer_format). */
#ifndef YF_BMES_H
#define YF_BMES_H

#include "task/eval.h"

typedef struct yf_span {
    int type;             /* index into yf_type_names */
    size_t start, end;    /* byte offsets into the sentence text, [start, end) */
} yf_span;

typedef struct yf_bmes_sentence {
    char *text;           /* the characters joined, NUL-terminated */
    size_t len;           /* bytes */
    int64_t n_chars;      /* lines (characters) */
    int64_t line;         /* file line of its first character, 1-based */
    yf_span *spans;       /* [n_spans] in order of position */
    size_t n_spans;
} yf_bmes_sentence;

typedef struct yf_bmes_corpus {
    yf_bmes_sentence *s;  /* [n] */
    size_t n;
    int64_t n_chars;
    int64_t n_entities[YF_N_TYPES]; /* spans per type (not distinct strings) */
    int64_t n_cut;        /* entities cut in two by a blank line, left out */
    int64_t cut_lines[8]; /* lines of the first such breaks */
} yf_bmes_corpus;

/* Reads and checks a BMES file. Malformed input (no tag, an unknown tag, M or
 * E without B, B/S/O inside an entity, text that is not UTF-8) is an error
 * naming the file and line.
 * One defect is tolerated because the real corpus has it (train.char.bmes,
 * twice): a blank line inside an entity ("...M-ORG / blank / M-ORG...E-ORG").
 * The sentence break is kept (the corpus's 3,821 sentences count it) and
 * neither half is a whole entity, so both halves are left out of the answers;
 * n_cut and cut_lines report them. */
int yf_bmes_read(const char *path, yf_bmes_corpus *out);
void yf_bmes_free(yf_bmes_corpus *c);

/* The sentence's answer: each type's distinct entity strings in order of
 * first appearance, types with none left out (malloc'd JSON text). */
char *yf_bmes_answer(const yf_bmes_sentence *s);

/* Writes one {"input": ..., "output": ...} line per sentence, as Python's
 * json.dumps(record, ensure_ascii=False) writes it; atomically. */
int yf_bmes_write_jsonl(const yf_bmes_corpus *c, const char *path);

/* ---- augmentation: training data that teaches copying ---------------------
 * Mention replacement on the training split: a variant of a sentence has each
 * of its entities replaced by another entity of the same type drawn from the
 * same corpus, and its answer is rewritten from the new spans
 * (yf_bmes_answer), so the answer always names strings of the new input, in
 * order of first appearance. A model trained from scratch on 3,821 sentences
 * otherwise learns the entities themselves (the names in the training
 * résumés) instead of copying what the input says; variants put familiar
 * contexts around other strings. Only for the training split: the pool of
 * replacements is the corpus being augmented, and an augmented dev or test
 * split would score a model on sentences nobody wrote. */

/* out = c's sentences, each followed by k variants when it has at least one
 * entity (a sentence without entities has no variant: it would be a copy).
 * In a variant every occurrence of one entity string becomes the same
 * replacement, drawn uniformly from the distinct strings of that type in c
 * (another string than the original whenever the type has one). The same
 * (c, k, seed) gives the same out. k in [0, 1000]; out is freed with
 * yf_bmes_free. */
int yf_bmes_augment(const yf_bmes_corpus *c, int64_t k, uint64_t seed, yf_bmes_corpus *out);

#endif
