#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

/* ---- help ------------------------------------------------------------------ */

static const char *metavar(const yc_opt *o) {
    if (o->kind == YC_FLAG) return NULL;
    if (o->meta) return o->meta;
    return o->kind == YC_INT ? "N" : o->kind == YC_FLOAT ? "X" : "VALUE";
}

/* "--name META": how the option is typed. */
static void spelling(const char *name, const yc_opt *o, char *buf, size_t cap) {
    const char *m = metavar(o);
    snprintf(buf, cap, "--%s%s%s", name, m ? " " : "", m ? m : "");
}

/* A number as one would type it: %g without the exponent's padding (5e-5, not 5e-05). */
static void fmt_number(double v, char *buf, size_t cap) {
    char t[64];
    snprintf(t, sizeof t, "%g", v);
    char *e = strchr(t, 'e');
    if (!e) {
        snprintf(buf, cap, "%s", t);
        return;
    }
    const char *d = e + 2; /* past the sign */
    while (*d == '0' && d[1]) d++;
    snprintf(buf, cap, "%.*se%s%s", (int)(e - t), t, e[1] == '-' ? "-" : "", d);
}

/* The default as the help shows it; "" for none. */
static void default_of(const yc_opt *o, char *buf, size_t cap) {
    buf[0] = 0;
    if (o->def) {
        snprintf(buf, cap, "%s", o->def);
        return;
    }
    switch (o->kind) {
    case YC_STR: {
        const char *s = *(const char *const *)o->dst;
        if (s) snprintf(buf, cap, "%s", s);
        break;
    }
    case YC_INT: snprintf(buf, cap, "%lld", (long long)*(const int64_t *)o->dst); break;
    case YC_FLOAT:
        if (!isnan(*(const double *)o->dst)) fmt_number(*(const double *)o->dst, buf, cap);
        break;
    case YC_FLAG: break;
    }
}

static void usage(const char *cmd, const char *summary, const yc_opt *opts, int nopts) {
    enum { MAX_WIDTH = 34 };
    char left[128], def[256];
    int w = (int)strlen("--help");
    printf("usage: yuanft %s", cmd);
    for (int i = 0; i < nopts; i++) {
        spelling(opts[i].name, &opts[i], left, sizeof left);
        if ((int)strlen(left) > w) w = (int)strlen(left);
        if (opts[i].required) printf(" %s", left);
    }
    if (w > MAX_WIDTH) w = MAX_WIDTH;
    printf(" [options]\n\n%s\n\noptions:\n", summary);
    for (int i = 0; i < nopts; i++) {
        const yc_opt *o = &opts[i];
        spelling(o->name, o, left, sizeof left);
        printf("  %-*s  %s", w, left, o->help);
        if (o->alias) printf(" (alias: --%s%s)", o->alias, o->alias_warns ? ", deprecated" : "");
        default_of(o, def, sizeof def);
        if (def[0]) printf(" (default: %s)", def);
        if (o->required) printf(" [required]");
        printf("\n");
    }
    printf("  %-*s  %s\n", w, "--help", "show this help and exit");
}

/* ---- parsing ----------------------------------------------------------------- */

static bool same_name(const char *given, size_t n, const char *name) {
    if (!name || strlen(name) != n) return false;
    for (size_t i = 0; i < n; i++) {
        char c = given[i] == '_' ? '-' : given[i];
        if (c != name[i]) return false;
    }
    return true;
}

int yc_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "yuanft %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see yuanft %s --help)\n", cmd);
    va_end(ap);
    return 2;
}

/* "--a is required", "--a and --b are required", "--a, --b and --c are required". */
static int missing_required(const char *cmd, const yc_opt *opts, int nopts, uint64_t given) {
    char msg[512] = "";
    int n = 0, total = 0;
    for (int k = 0; k < nopts; k++) total += opts[k].required && !(given >> k & 1);
    if (total == 0) return 0;
    for (int k = 0; k < nopts; k++) {
        if (!opts[k].required || given >> k & 1) continue;
        size_t at = strlen(msg);
        snprintf(msg + at, sizeof msg - at, "%s--%s", n == 0 ? "" : n + 1 == total ? " and " : ", ", opts[k].name);
        n++;
    }
    return yc_usage_error(cmd, "%s %s required", msg, total == 1 ? "is" : "are");
}

int yc_parse(const char *cmd, const char *summary, int argc, char **argv, const yc_opt *opts, int nopts) {
    YF_CHECK(nopts >= 0 && nopts <= 64);
    /* --help wins wherever it stands, before any option changes a default the help shows */
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(cmd, summary, opts, nopts);
            return 1;
        }
    uint64_t given = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0) return yc_usage_error(cmd, "unexpected argument '%s'", a);
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t n = eq ? (size_t)(eq - name) : strlen(name);
        int k = 0;
        bool via_alias = false;
        for (; k < nopts; k++) {
            if (same_name(name, n, opts[k].name)) break;
            if (same_name(name, n, opts[k].alias)) {
                via_alias = true;
                break;
            }
        }
        if (k == nopts) return yc_usage_error(cmd, "unknown option '--%.*s'", (int)n, name);
        const yc_opt *o = &opts[k];
        given |= 1ull << k;
        if (via_alias && o->alias_warns) {
            char old[128], now[128];
            spelling(o->alias, o, old, sizeof old);
            spelling(o->name, o, now, sizeof now);
            fprintf(stderr, "yuanft %s: warning: %s is now %s (the old spelling still works, for now)\n", cmd, old, now);
        }
        if (o->kind == YC_FLAG) {
            bool v = true;
            if (eq) {
                const char *s = eq + 1;
                if (!strcmp(s, "false") || !strcmp(s, "0") || !strcmp(s, "False")) v = false;
                else if (strcmp(s, "true") && strcmp(s, "1") && strcmp(s, "True"))
                    return yc_usage_error(cmd, "--%.*s takes true or false, not '%s'", (int)n, name, s);
            }
            *(bool *)o->dst = v;
            continue;
        }
        const char *val = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!val) return yc_usage_error(cmd, "--%.*s needs a value", (int)n, name);
        char *end = NULL;
        errno = 0;
        switch (o->kind) {
        case YC_STR: *(const char **)o->dst = val; break;
        case YC_INT: {
            long long v = strtoll(val, &end, 10);
            if (errno || !*val || *end) return yc_usage_error(cmd, "--%.*s needs an integer, not '%s'", (int)n, name, val);
            *(int64_t *)o->dst = v;
            break;
        }
        case YC_FLOAT: {
            double v = strtod(val, &end);
            if (errno || !*val || *end) return yc_usage_error(cmd, "--%.*s needs a number, not '%s'", (int)n, name, val);
            *(double *)o->dst = v;
            break;
        }
        default: break;
        }
    }
    return missing_required(cmd, opts, nopts, given);
}

int yc_fail(const char *cmd) {
    fprintf(stderr, "yuanft %s: %s\n", cmd, yf_last_error());
    return 1;
}
