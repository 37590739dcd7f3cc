/* yuanft data: prepare training data.
 *   data resume-ner --bmes FILE --out FILE.jsonl   the Resume NER corpus → records
 *   data check --data FILE                          read and check a records file */
#include <stdio.h>
#include <string.h>

#include "bmes.h"
#include "cli.h"
#include "commands.h"
#include "data.h"

static int data_resume_ner(int argc, char **argv) {
    const char *bmes = NULL, *out = NULL;
    yc_opt opts[] = {
        {"bmes", YC_STR, &bmes, "Resume NER file (*.char.bmes: CHARACTER TAG a line, blank line between sentences)"},
        {"out", YC_STR, &out, "JSON Lines to write: {\"input\": sentence, \"output\": answer JSON} a line"},
    };
    int rc = yc_parse("data resume-ner", "Converts the Resume NER corpus into the recipe's training records.", argc, argv,
                      opts, 2);
    if (rc) return rc == 1 ? 0 : 2;
    if (!bmes || !out) {
        fprintf(stderr, "yuanft data resume-ner: --bmes and --out are required\n");
        return 2;
    }
    yf_bmes_corpus c;
    if (yf_bmes_read(bmes, &c)) return yc_fail("data resume-ner");
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
    yc_opt opts[] = {{"data", YC_STR, &path, "records: a JSON array or JSON Lines of {\"input\", \"output\"}"}};
    int rc = yc_parse("data check", "Reads a training data file and reports its records or its first error.", argc, argv,
                      opts, 1);
    if (rc) return rc == 1 ? 0 : 2;
    if (!path) {
        fprintf(stderr, "yuanft data check: --data is required\n");
        return 2;
    }
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

static void usage(FILE *f) {
    fprintf(f, "usage: yuanft data SUBCOMMAND [options]\n\n"
               "subcommands:\n"
               "  resume-ner   convert the Resume NER corpus (--bmes FILE --out FILE.jsonl)\n"
               "  check        read and check a training data file (--data FILE)\n"
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
    fprintf(stderr, "yuanft data: unknown subcommand '%s' (see yuanft data --help)\n", sub);
    return 2;
}
