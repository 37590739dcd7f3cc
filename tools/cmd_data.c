/* yuanft data: prepare training data.
 *   data resume-ner --bmes FILE --output-file FILE.jsonl [--augment K --seed S]
 *                                                           the Resume NER corpus → records
 *   data check --data FILE                                  read and check a records file
 *   data tokenize --data FILE --tokenizer FILE [--prompt-template T] [--max-length N]
 *                 [--output-file FILE.safetensors]          records → training tensors, as train does */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "task/bmes.h"
#include "cli.h"
#include "commands.h"
#include "task/data.h"
#include "tokenizer/tokenizer.h"

/* Whether a corpus file's name says it is a dev or test split. */
static bool is_held_out(const char *path) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    return strstr(base, "dev") || strstr(base, "test") || strstr(base, "valid");
}

static int data_resume_ner(int argc, char **argv) {
    const char *bmes = NULL, *out = NULL;
    int64_t augment = 0, seed = 42;
    const yc_opt opts[] = {
        YC_OPT("bmes", YC_STR, &bmes, "Resume NER file (*.char.bmes: CHARACTER TAG a line, blank line between sentences)",
               .meta = "FILE", .required = true),
        YC_OPT_OUTPUT_FILE(&out, "the JSON Lines to write: {\"input\": sentence, \"output\": answer JSON} a line",
                           .required = true),
        YC_OPT("augment", YC_INT, &augment, "training split only: after each sentence with entities, K variants with every "
               "entity replaced by another of its type from the same file, the answer rewritten", .meta = "K"),
        YC_OPT("seed", YC_INT, &seed, "with --augment: the draw of the replacements"),
    };
    int rc = yc_parse("data resume-ner", "Convert the Resume NER corpus (BMES) into the recipe's training records.", argc,
                      argv, opts, (int)(sizeof opts / sizeof *opts));
    if (rc) return rc == 1 ? 0 : 2;
    if (augment < 0 || augment > 1000)
        return yc_usage_error("data resume-ner", "--augment must be in [0, 1000] (got %lld)", (long long)augment);
    if (augment > 0 && is_held_out(bmes))
        return yc_usage_error("data resume-ner", "%s looks like a dev or test split: --augment is for the training split "
                              "only (scores on augmented held-out data mean nothing)", bmes);
    yf_bmes_corpus c;
    if (yf_bmes_read(bmes, &c)) return yc_fail("data resume-ner");
    if (augment > 0) {
        yf_bmes_corpus aug;
        int arc = yf_bmes_augment(&c, augment, (uint64_t)seed, &aug);
        yf_bmes_free(&c);
        if (arc) return yc_fail("data resume-ner");
        c = aug;
    }
    if (yf_bmes_write_jsonl(&c, out)) {
        yf_bmes_free(&c);
        return yc_fail("data resume-ner");
    }
    if (c.n_cut) {
        fprintf(stderr, "warning: %s: %lld entities cut in two by a blank line were left out (lines", bmes, (long long)c.n_cut);
        for (int64_t i = 0; i < c.n_cut && i < 8; i++) fprintf(stderr, " %lld", (long long)c.cut_lines[i]);
        fprintf(stderr, "%s)\n", c.n_cut > 8 ? " ..." : "");
    }
    int64_t total = 0, with = 0;
    for (int t = 0; t < YF_N_TYPES; t++) total += c.n_entities[t];
    for (size_t i = 0; i < c.n; i++) with += c.s[i].n_spans > 0;
    printf("%s: %zu sentences (%lld with entities), %lld characters, %lld entities -> %s\n", bmes, c.n, (long long)with,
           (long long)c.n_chars, (long long)total, out);
    for (int t = 0; t < YF_N_TYPES; t++) {
        char label[64];
        snprintf(label, sizeof label, "%s %s", yf_type_names[t], yf_type_tags[t]);
        /* CJK characters are two columns wide but three bytes: pad by columns */
        int cols = (int)(strlen(yf_type_names[t]) / 3 * 2 + 1 + strlen(yf_type_tags[t]));
        printf("  %s%*s %7lld\n", label, 16 - cols, "", (long long)c.n_entities[t]);
    }
    yf_bmes_free(&c);
    return 0;
}

static int data_check(int argc, char **argv) {
    const char *path = NULL;
    const yc_opt opts[] = {YC_OPT("data", YC_STR, &path, "records: a JSON array or JSON Lines of {\"input\", \"output\"}",
                                  .meta = "FILE", .required = true)};
    int rc = yc_parse("data check", "Read a training data file and report its records or its first error.", argc, argv,
                      opts, (int)(sizeof opts / sizeof *opts));
    if (rc) return rc == 1 ? 0 : 2;
    yf_records r;
    if (yf_data_load(path, &r)) return yc_fail("data check");
    size_t in = 0, out = 0;
    for (size_t i = 0; i < r.n; i++) {
        in += strlen(r.r[i].input);
        out += strlen(r.r[i].output);
    }
    printf("%s: %zu records, %zu input bytes, %zu output bytes\n", path, r.n, in, out);
    yf_records_free(&r);
    return 0;
}

static int data_tokenize(int argc, char **argv) {
    const char *path = NULL, *tokp = NULL, *tmpl = "resume", *out = NULL;
    int64_t max_length = YF_DEFAULT_MAX_LENGTH;
    const yc_opt opts[] = {
        YC_OPT("data", YC_STR, &path, "records: a JSON array or JSON Lines of {\"input\", \"output\"}", .meta = "FILE",
               .required = true),
        YC_OPT("tokenizer", YC_STR, &tokp, "tokenizer.model, or a model directory holding it", .meta = "FILE",
               .required = true),
        YC_OPT_PROMPT_TEMPLATE(&tmpl, "", .alias = "template"),
        YC_OPT("max-length", YC_INT, &max_length, "truncate input_ids and labels to this many tokens; 0: no limit"),
        YC_OPT_OUTPUT_FILE(&out, "write the tensors here (safetensors: input_ids, labels [N, T], lengths [N])"),
    };
    int rc = yc_parse("data tokenize",
                      "Turn training records into training tensors, as train does; `tokenize` encodes plain strings to ids.\n"
                      "prompt = template(input) + <sep> (labels -100), answer = output + <eod>; saved with --output-file,\n"
                      "a file train --data takes.",
                      argc, argv, opts, (int)(sizeof opts / sizeof *opts));
    if (rc) return rc == 1 ? 0 : 2;
    char *tpath = yf_dir_exists(tokp) ? yf_path_join(tokp, "tokenizer.model") : yf_strdup(tokp);
    yf_records recs = {0};
    yf_template t = {0};
    yf_tokenizer *tok = NULL;
    yf_encoder enc;
    yf_dataset ds = {0};
    rc = yf_data_load(path, &recs);
    if (rc == 0) rc = yf_template_load(tmpl, &t);
    if (rc == 0) rc = yf_tokenizer_load(tpath, &tok);
    if (rc == 0) rc = yf_encoder_from_tokenizer(tok, &enc);
    double t0 = yf_time();
    if (rc == 0) rc = yf_dataset_build(&recs, &t, &enc, max_length, &ds);
    double dt = yf_time() - t0;
    if (rc == 0 && out) rc = yf_dataset_save(&ds, out);
    if (rc == 0) {
        int64_t tokens = 0, scored = 0;
        for (size_t i = 0; i < ds.n; i++) {
            tokens += ds.ex[i].len;
            scored += ds.ex[i].len - ds.ex[i].prompt_len;
        }
        printf("%s: %zu examples, %lld tokens (%lld answer tokens), longest %lld, %lld truncated to %lld, %lld with no "
               "answer left; %.2f s%s%s\n",
               path, ds.n, (long long)tokens, (long long)scored, (long long)ds.longest, (long long)ds.n_truncated,
               (long long)max_length, (long long)ds.n_no_answer, dt, out ? " -> " : "", out ? out : "");
        if (ds.n_no_answer)
            fprintf(stderr, "warning: %lld examples have no answer token left after truncation (raise --max-length)\n",
                    (long long)ds.n_no_answer);
    }
    yf_dataset_free(&ds);
    if (tok) yf_tokenizer_free(tok);
    yf_template_free(&t);
    yf_records_free(&recs);
    free(tpath);
    return rc ? yc_fail("data tokenize") : 0;
}

static void usage(FILE *f) {
    fprintf(f, "usage: yuanft data SUBCOMMAND [options]\n\n"
               "Prepare training data.\n\n"
               "subcommands:\n"
               "  resume-ner   Convert the Resume NER corpus into training records (--bmes FILE --output-file FILE.jsonl [--augment K])\n"
               "  check        Read and check a training data file (--data FILE)\n"
               "  tokenize     Turn training records into training tensors, as train does (--output-file FILE.safetensors)\n"
               "\n'yuanft data SUBCOMMAND --help' shows its options.\n");
}

int cmd_data(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *sub = argv[1];
    if (!strcmp(sub, "--help") || !strcmp(sub, "-h")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(sub, "resume-ner")) return data_resume_ner(argc - 1, argv + 1);
    if (!strcmp(sub, "check")) return data_check(argc - 1, argv + 1);
    if (!strcmp(sub, "tokenize")) return data_tokenize(argc - 1, argv + 1);
    fprintf(stderr, "yuanft data: unknown subcommand '%s' (see yuanft data --help)\n", sub);
    return 2;
}
