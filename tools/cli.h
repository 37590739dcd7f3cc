/* cli: the declarative option parser every subcommand uses, and the one help
 * style. Accepts --name value, --name=value, and underscores for dashes
 * (--learning_rate = --learning-rate), as the HF Trainer's users type them.
 *
 * Help (`yuanft CMD --help`), one line an option:
 *   --output-dir DIR   where the model goes (alias: --out) [required]
 *   --seed N           random seed (default: 42)
 * The metavar is .meta, else N for integers, X for numbers, VALUE for
 * strings; the default is the initial value of *dst (integers, numbers,
 * non-NULL strings), or .def in words where the value does not say it;
 * required options end with [required]. */
#ifndef YF_CLI_H
#define YF_CLI_H

#include <stdbool.h>
#include <stdint.h>

typedef enum { YC_STR, YC_INT, YC_FLOAT, YC_FLAG } yc_kind;

typedef struct yc_opt {
    const char *name;  /* without the leading dashes, with dashes: "learning-rate" */
    yc_kind kind;
    void *dst;         /* const char **, int64_t *, double *, bool *; holds the default */
    const char *help;  /* one line saying what it is: no default, no [required] */
    const char *meta;  /* the value in the help: DIR, FILE, ... (NULL: by kind) */
    const char *def;   /* the default in words, when *dst's value does not say it; "" shows none */
    bool required;     /* yc_parse fails (exit 2) when it is not given */
    const char *alias; /* another spelling (an old one) that sets the same dst; listed in --help */
    bool alias_warns;  /* the alias is deprecated: using it prints a one-line warning */
} yc_opt;

/* One option: YC_OPT("seed", YC_INT, &seed, "random seed"), and any of the
 * other fields after the help: YC_OPT(..., .meta = "DIR", .required = true). */
#define YC_OPT(name_, kind_, dst_, help_, ...) \
    { .name = (name_), .kind = (kind_), .dst = (dst_), .help = (help_), __VA_ARGS__ }

/* Options several commands share: one spelling, metavar and help each.
 * `when` is a literal prefix saying when the option applies ("with --model: "), or "". */
#define YC_OPT_MODEL(dst) \
    YC_OPT("model", YC_STR, dst, "model directory (config.json + weights)", .meta = "DIR", .required = true)
#define YC_OPT_ADAPTER(dst, when) \
    YC_OPT("adapter", YC_STR, dst, when "PEFT adapter directory, applied without merging", .meta = "DIR")
#define YC_OPT_TOKENIZER(dst, when) \
    YC_OPT("tokenizer", YC_STR, dst, when "tokenizer.model", .meta = "FILE", .def = "MODEL/tokenizer.model")
#define YC_OPT_PROMPT_TEMPLATE(dst, when, ...)                                                                     \
    YC_OPT("prompt-template", YC_STR, dst, when "the prompt template: resume (the recipe's), none, or a file with " \
           "{input}", .meta = "TEMPLATE", __VA_ARGS__)
/* What a command writes: a directory (HF's --output_dir) or a single file;
 * --out, the old spelling of both, stays as an alias. */
#define YC_OPT_OUTPUT_DIR(dst, help) \
    YC_OPT("output-dir", YC_STR, dst, help, .meta = "DIR", .required = true, .alias = "out")
#define YC_OPT_OUTPUT_FILE(dst, help, ...) \
    YC_OPT("output-file", YC_STR, dst, help, .meta = "FILE", .alias = "out", __VA_ARGS__)
/* Constrained extraction (docs/constrained-decoding.md): extract and eval. */
#define YC_OPT_CONSTRAIN(dst, when)                                                                                \
    YC_OPT("constrain", YC_STR, dst, when "spans: answers in the training format, every string a substring of the " \
           "input; schema: the format, strings free; none: free-running", .meta = "spans|schema|none")
#define YC_OPT_TYPES(dst, when)                                                                                  \
    YC_OPT("types", YC_STR, dst, when "the answer's keys: type names or tags, comma-separated", .meta = "LIST", \
           .def = "all eight, 姓名,...,地名")
#define YC_OPT_BF16(dst)                                                                                             \
    YC_OPT("bf16", YC_FLAG, dst, "bf16 compute (activations rounded to bf16 in the matrix products, like torch autocast)")

/* Parses argv[1..] (argv[0] is the subcommand). Returns 0 on success, 1 when
 * --help was printed (caller returns 0), 2 on a usage error (message printed,
 * as yc_usage_error does: unknown options, bad values, a missing required
 * option). Positional arguments are rejected. summary: the first line says
 * what the command does, in the imperative ("Write ...", "Merge ..."). */
int yc_parse(const char *cmd, const char *summary, int argc, char **argv, const yc_opt *opts, int nopts);

/* Prints "yuanft CMD: <message> (see yuanft CMD --help)" to stderr and
 * returns 2, the exit status of a usage error. */
int yc_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prints "yuanft CMD: <last library error>" to stderr and returns 1. */
int yc_fail(const char *cmd);

#endif
