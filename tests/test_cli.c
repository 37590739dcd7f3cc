/* The command line: the option parser (aliases, required options, the one
 * help style) and every command's --help. */
#include "harness.h"
#include "../tools/cli.h"

#include <ctype.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* yc_parse with stdout and stderr captured into out; returns its status. */
static int parse_capture(int argc, char **argv, const yc_opt *opts, int nopts, char *out, size_t cap) {
    char path[700];
    snprintf(path, sizeof path, "%s/capture.txt", yt_tmpdir());
    fflush(stdout);
    fflush(stderr);
    int so = dup(1), se = dup(2), fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    close(fd);
    int rc = yc_parse("x", "Do a thing.", argc, argv, opts, nopts);
    fflush(stdout);
    fflush(stderr);
    dup2(so, 1);
    dup2(se, 2);
    close(so);
    close(se);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(out, 1, cap - 1, f) : 0;
    out[n] = 0;
    if (f) fclose(f);
    return rc;
}

typedef struct parsed {
    const char *model, *out_dir, *input;
    int64_t seed;
    double lr;
    bool flag;
} parsed;

#define NOPTS 6
static void test_opts(parsed *p, yc_opt *o) {
    *p = (parsed){.seed = 42, .lr = 5e-5};
    const yc_opt opts[NOPTS] = {
        YC_OPT("model", YC_STR, &p->model, "model directory", .meta = "DIR", .required = true),
        YC_OPT("output-dir", YC_STR, &p->out_dir, "where it goes", .meta = "DIR", .alias = "out"),
        YC_OPT("input", YC_STR, &p->input, "the batch", .meta = "FILE", .alias = "batch", .alias_warns = true),
        YC_OPT("seed", YC_INT, &p->seed, "random seed"),
        YC_OPT("learning-rate", YC_FLOAT, &p->lr, "peak learning rate"),
        YC_OPT("flag", YC_FLAG, &p->flag, "a switch"),
    };
    memcpy(o, opts, sizeof opts);
}

TEST(cli_alias_sets_the_same_destination) {
    parsed p;
    yc_opt o[NOPTS];
    char out[4096];
    test_opts(&p, o);
    char *a1[] = {"x", "--model", "m", "--out", "d1", "--seed=7"};
    CHECK(parse_capture(6, a1, o, NOPTS, out, sizeof out) == 0, "%s", out);
    CHECK(p.out_dir && !strcmp(p.out_dir, "d1") && p.seed == 7 && out[0] == 0, "out_dir %s: %s", p.out_dir, out);
    test_opts(&p, o);
    char *a2[] = {"x", "--model", "m", "--out=d2", "--output_dir", "d3"};
    CHECK(parse_capture(6, a2, o, NOPTS, out, sizeof out) == 0 && !strcmp(p.out_dir, "d3"), "%s", out);
    /* a deprecated alias works and says what the spelling is now */
    test_opts(&p, o);
    char *a3[] = {"x", "--model", "m", "--batch", "b.safetensors"};
    CHECK(parse_capture(5, a3, o, NOPTS, out, sizeof out) == 0, "%s", out);
    CHECK(p.input && !strcmp(p.input, "b.safetensors"), "input %s", p.input);
    CHECK(strstr(out, "yuanft x: warning: --batch FILE is now --input FILE") != NULL, "%s", out);
    test_opts(&p, o);
    char *a4[] = {"x", "--model", "m", "--input", "b.safetensors"};
    CHECK(parse_capture(5, a4, o, NOPTS, out, sizeof out) == 0 && out[0] == 0, "%s", out);
}

TEST(cli_required_and_bad_values_exit_2_in_one_form) {
    parsed p;
    yc_opt o[NOPTS];
    char out[4096];
    test_opts(&p, o);
    o[3].required = true;
    char *a1[] = {"x", "--flag"};
    CHECK(parse_capture(2, a1, o, NOPTS, out, sizeof out) == 2, "%s", out);
    CHECK(!strcmp(out, "yuanft x: --model and --seed are required (see yuanft x --help)\n"), "%s", out);
    test_opts(&p, o);
    CHECK(parse_capture(1, a1, o, NOPTS, out, sizeof out) == 2, "%s", out);
    CHECK(!strcmp(out, "yuanft x: --model is required (see yuanft x --help)\n"), "%s", out);
    static const struct { const char *arg, *msg; } bad[] = {
        {"--seed=x", "yuanft x: --seed needs an integer, not 'x' (see yuanft x --help)\n"},
        {"--learning_rate=1e", "yuanft x: --learning_rate needs a number, not '1e' (see yuanft x --help)\n"},
        {"--flag=maybe", "yuanft x: --flag takes true or false, not 'maybe' (see yuanft x --help)\n"},
        {"--nope", "yuanft x: unknown option '--nope' (see yuanft x --help)\n"},
        {"stray", "yuanft x: unexpected argument 'stray' (see yuanft x --help)\n"},
        {"--out", "yuanft x: --out needs a value (see yuanft x --help)\n"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        test_opts(&p, o);
        char *a[] = {"x", "--model", "m", (char *)bad[i].arg};
        CHECK(parse_capture(4, a, o, NOPTS, out, sizeof out) == 2 && !strcmp(out, bad[i].msg), "%s: %s", bad[i].arg, out);
    }
}

TEST(cli_help_shows_metavars_defaults_aliases_required) {
    parsed p;
    yc_opt o[NOPTS];
    char out[4096];
    test_opts(&p, o);
    /* --help wins wherever it is, and shows the defaults, not values given before it */
    char *a[] = {"x", "--seed", "7", "--help"};
    CHECK(parse_capture(4, a, o, NOPTS, out, sizeof out) == 1, "%s", out);
    static const char *want[][2] = {
        {"--model DIR", "model directory [required]"},
        {"--output-dir DIR", "where it goes (alias: --out)"},
        {"--input FILE", "the batch (alias: --batch, deprecated)"},
        {"--seed N", "random seed (default: 42)"},
        {"--learning-rate X", "peak learning rate (default: 5e-5)"},
        {"--flag", "a switch"},
        {"--help", "show this help and exit"},
    };
    CHECK(!strncmp(out, "usage: yuanft x --model DIR [options]\n\nDo a thing.\n\noptions:\n", 58), "%s", out);
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        char line[200];
        snprintf(line, sizeof line, "\n  %-17s  %s\n", want[i][0], want[i][1]); /* 17: --learning-rate X */
        CHECK(strstr(out, line) != NULL, "want '%s' in:\n%s", line + 1, out);
    }
}

/* ---- every command's --help ------------------------------------------------ */

/* The commands `yuanft --help` lists, and the data subcommands. */
static int list_commands(char names[][32], int cap) {
    char out[8192];
    int n = 0;
    CHECK(yt_sh(out, sizeof out, "%s --help", yt_cli()) == 0, "%s", out);
    char *p = strstr(out, "commands:\n");
    for (p = p ? strchr(p, '\n') + 1 : NULL; p && p[0] == ' ' && p[1] == ' ' && n < cap; p = strchr(p, '\n') + 1) {
        sscanf(p, "%31s", names[n]);
        if (strcmp(names[n], "data")) n++;
        if (!strchr(p, '\n')) break;
    }
    static const char *data_subs[] = {"data resume-ner", "data check", "data tokenize"};
    for (int i = 0; i < 3 && n < cap; i++) snprintf(names[n++], 32, "%s", data_subs[i]);
    return n;
}

TEST(cli_every_command_help_in_one_style) {
    char names[32][32], out[16384];
    int n = list_commands(names, 32);
    CHECK(n >= 12, "%d commands", n);
    for (int i = 0; i < n; i++) {
        int rc = yt_sh(out, sizeof out, "%s %s --help", yt_cli(), names[i]);
        char head[64];
        snprintf(head, sizeof head, "usage: yuanft %.31s ", names[i]);
        CHECK(rc == 0 && !strncmp(out, head, strlen(head)), "%s --help: exit %d:\n%s", names[i], rc, out);
        /* the summary: its first word is an imperative ("Write", not "Writes") */
        char *summary = strstr(out, "\n\n");
        char word[32] = "";
        if (summary) sscanf(summary + 2, "%31[A-Za-z-]", word);
        size_t wl = strlen(word);
        CHECK(wl > 1 && isupper((unsigned char)word[0]) && word[wl - 1] != 's', "%s: summary starts with '%s'", names[i], word);
        /* every option line: [required] only at the end, defaults as (default: X), no other forms */
        char *opts = strstr(out, "options:\n"), *save = NULL;
        for (char *line = opts ? strtok_r(opts, "\n", &save) : NULL; line; line = strtok_r(NULL, "\n", &save)) {
            char *req = strstr(line, "[required]");
            CHECK(!req || req[strlen("[required]")] == 0, "%s: [required] not at the end: %s", names[i], line);
            CHECK(!strstr(line, "(required)") && !strstr(line, "(default ") && !strstr(line, "(optional)"),
                  "%s: another style: %s", names[i], line);
        }
    }
}

/* ---- one name for one thing; the old spellings still work ------------------- */

TEST(cli_help_lists_the_aliases) {
    static const struct { const char *cmd, *line_start, *alias; } want[] = {
        {"init", "--output-dir DIR", "(alias: --out)"},
        {"merge", "--output-dir DIR", "(alias: --out)"},
        {"train", "--output-dir DIR", "(alias: --out)"},
        {"score", "--input FILE", "(alias: --batch, deprecated)"},
        {"score", "--output-file FILE", "(alias: --out)"},
        {"data resume-ner", "--output-file FILE", "(alias: --out)"},
        {"data tokenize", "--output-file FILE", "(alias: --out)"},
        {"data tokenize", "--prompt-template TEMPLATE", "(alias: --template)"},
    };
    char out[16384], needle[64];
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        int rc = yt_sh(out, sizeof out, "%s %s --help", yt_cli(), want[i].cmd);
        snprintf(needle, sizeof needle, "\n  %s ", want[i].line_start);
        char *line = strstr(out, needle), *nl = line ? strchr(line + 1, '\n') : NULL, *alias = strstr(out, want[i].alias);
        CHECK(rc == 0 && line && alias && alias > line && (!nl || alias < nl), "%s: want '%s ... %s':\n%s", want[i].cmd,
              want[i].line_start, want[i].alias, out);
    }
}

/* Every renamed option's old spelling parses to the same thing; only
 * score's --batch (a count elsewhere) warns. */
TEST(cli_old_spellings_still_work) {
    char g[600], tok[600], out[16384];
    snprintf(g, sizeof g, "%s", yt_shared_path("golden/yuan-tiny"));
    snprintf(tok, sizeof tok, "%s", yt_shared_path("yuan/tokenizer.model"));
    const char *d = yt_tmpdir();
    int rc = yt_sh(out, sizeof out, "%s score --model %s --batch %s/forward.safetensors --out %s/logits.safetensors", yt_cli(),
                   g, g, d);
    CHECK(rc == 0 && strstr(out, "yuanft score: warning: --batch FILE is now --input FILE") && strstr(out, "loss "),
          "score --batch: exit %d:\n%s", rc, out);
    CHECK(yt_sh(NULL, 0, "test -s %s/logits.safetensors", d) == 0, "score --out wrote nothing");
    rc = yt_sh(out, sizeof out, "%s init --config %s/config.json --out %s/init --seed 3", yt_cli(), g, d);
    CHECK(rc == 0 && !strstr(out, "warning") && yt_sh(NULL, 0, "test -s %s/init/model.safetensors", d) == 0,
          "init --out: exit %d:\n%s", rc, out);
    rc = yt_sh(out, sizeof out, "%s merge --model %s --adapter %s/lora --out %s/merged", yt_cli(), g, g, d);
    CHECK(rc == 0 && !strstr(out, "warning") && yt_sh(NULL, 0, "test -s %s/merged/model.safetensors", d) == 0,
          "merge --out: exit %d:\n%s", rc, out);
    rc = yt_sh(out, sizeof out,
               "OMP_NUM_THREADS=1 %s train --model %s --data %s/forward.safetensors --out %s/train --max-steps 1 "
               "--per-device-train-batch-size 2 --save-strategy no",
               yt_cli(), g, g, d);
    CHECK(rc == 0 && yt_sh(NULL, 0, "test -s %s/train/adapter_model.safetensors", d) == 0, "train --out: exit %d:\n%s", rc,
          out);
    rc = yt_sh(out, sizeof out, "%s data resume-ner --bmes %s --out %s/dev.jsonl", yt_cli(),
               yt_shared_path("data/resume-ner/dev.char.bmes"), d);
    CHECK(rc == 0 && strstr(out, "463 sentences"), "data resume-ner --out: exit %d:\n%s", rc, out);
    rc = yt_sh(out, sizeof out,
               "head -n 3 %s/dev.jsonl > %s/three.jsonl && %s data tokenize --data %s/three.jsonl --tokenizer %s "
               "--template none --out %s/old.safetensors && %s data tokenize --data %s/three.jsonl --tokenizer %s "
               "--prompt-template none --output-file %s/new.safetensors && cmp %s/old.safetensors %s/new.safetensors",
               d, d, yt_cli(), d, tok, d, yt_cli(), d, tok, d, d, d);
    CHECK(rc == 0 && strstr(out, "3 examples") && !strstr(out, "warning"), "data tokenize --template/--out: exit %d:\n%s", rc,
          out);
}

/* train's decoding flags for eval_f1 are checked before anything is read:
 * a bad value exits 2 naming the flag and what it takes. */
TEST(cli_train_bad_constrain_and_types_exit_2) {
    static const struct { const char *args, *want; } bad[] = {
        {"--constrain bogus", "--constrain takes spans, schema or none, not 'bogus'"},
        {"--types FOO", "--types: unknown type 'FOO'"},
    };
    char out[4096];
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int rc = yt_sh(out, sizeof out, "%s train --model /nonexistent --data /nonexistent --output-dir %s/never %s",
                       yt_cli(), yt_tmpdir(), bad[i].args);
        CHECK(rc == 2 && strstr(out, bad[i].want), "%s: exit %d:\n%s", bad[i].args, rc, out);
    }
    CHECK(yt_sh(out, sizeof out, "test -e %s/never", yt_tmpdir()) != 0, "the output dir was created");
}
