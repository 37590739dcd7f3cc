#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

static void usage(const char *cmd, const char *summary, const yc_opt *opts, int nopts) {
    printf("usage: yuanft %s [options]\n\n%s\n\noptions:\n", cmd, summary);
    for (int i = 0; i < nopts; i++) {
        const char *arg = opts[i].kind == YC_STR ? " VALUE" : opts[i].kind == YC_INT ? " N"
                          : opts[i].kind == YC_FLOAT ? " X" : "";
        char left[96];
        snprintf(left, sizeof left, "--%s%s", opts[i].name, arg);
        printf("  %-30s %s\n", left, opts[i].help);
    }
    printf("  %-30s %s\n", "--help", "show this help");
}

static bool same_name(const char *given, size_t n, const char *name) {
    if (strlen(name) != n) return false;
    for (size_t i = 0; i < n; i++) {
        char c = given[i] == '_' ? '-' : given[i];
        if (c != name[i]) return false;
    }
    return true;
}

int yc_parse(const char *cmd, const char *summary, int argc, char **argv, const yc_opt *opts, int nopts) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(cmd, summary, opts, nopts);
            return 1;
        }
        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "yuanft %s: unexpected argument '%s' (see yuanft %s --help)\n", cmd, a, cmd);
            return 2;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t n = eq ? (size_t)(eq - name) : strlen(name);
        const yc_opt *o = NULL;
        for (int k = 0; k < nopts; k++)
            if (same_name(name, n, opts[k].name)) o = &opts[k];
        if (!o) {
            fprintf(stderr, "yuanft %s: unknown option '%.*s' (see yuanft %s --help)\n", cmd, (int)(n + 2), a, cmd);
            return 2;
        }
        if (o->kind == YC_FLAG) {
            bool v = true;
            if (eq) {
                const char *s = eq + 1;
                if (!strcmp(s, "false") || !strcmp(s, "0") || !strcmp(s, "False")) v = false;
                else if (strcmp(s, "true") && strcmp(s, "1") && strcmp(s, "True")) {
                    fprintf(stderr, "yuanft %s: --%s takes true or false, not '%s'\n", cmd, o->name, s);
                    return 2;
                }
            }
            *(bool *)o->dst = v;
            continue;
        }
        const char *val = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!val) {
            fprintf(stderr, "yuanft %s: --%s needs a value\n", cmd, o->name);
            return 2;
        }
        char *end = NULL;
        errno = 0;
        switch (o->kind) {
        case YC_STR: *(const char **)o->dst = val; break;
        case YC_INT: {
            long long v = strtoll(val, &end, 10);
            if (errno || !*val || *end) {
                fprintf(stderr, "yuanft %s: --%s needs an integer, not '%s'\n", cmd, o->name, val);
                return 2;
            }
            *(int64_t *)o->dst = v;
            break;
        }
        case YC_FLOAT: {
            double v = strtod(val, &end);
            if (errno || !*val || *end) {
                fprintf(stderr, "yuanft %s: --%s needs a number, not '%s'\n", cmd, o->name, val);
                return 2;
            }
            *(double *)o->dst = v;
            break;
        }
        default: break;
        }
    }
    return 0;
}

int yc_fail(const char *cmd) {
    fprintf(stderr, "yuanft %s: %s\n", cmd, yf_last_error());
    return 1;
}
