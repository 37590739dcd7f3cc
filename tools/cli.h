/* cli: the declarative option parser every subcommand uses.
 * Accepts --name value, --name=value, and underscores for dashes
 * (--learning_rate = --learning-rate), as the HF Trainer's users type them. */
#ifndef YF_CLI_H
#define YF_CLI_H

#include <stdbool.h>
#include <stdint.h>

typedef enum { YC_STR, YC_INT, YC_FLOAT, YC_FLAG } yc_kind;

typedef struct yc_opt {
    const char *name;  /* without the leading dashes, with dashes: "learning-rate" */
    yc_kind kind;
    void *dst;         /* const char **, int64_t *, double *, bool * */
    const char *help;  /* one line; defaults belong here */
} yc_opt;

/* Parses argv[1..] (argv[0] is the subcommand). Returns 0 on success, 1 when
 * --help was printed (caller returns 0), 2 on a usage error (message printed).
 * Positional arguments are rejected. */
int yc_parse(const char *cmd, const char *summary, int argc, char **argv, const yc_opt *opts, int nopts);

/* Prints "yuanft CMD: <last library error>" to stderr and returns 1. */
int yc_fail(const char *cmd);

#endif
