#include "base/svg.h"

#include <math.h>
#include <string.h>

/* A "nice" tick step (1, 2 or 5 times a power of ten) giving about `want` ticks. */
static double nice_step(double span, int want) {
    if (!(span > 0)) return 1.0;
    double raw = span / want, p = pow(10.0, floor(log10(raw))), f = raw / p;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

static void xml_text(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '<') fputs("&lt;", f);
        else if (*s == '>') fputs("&gt;", f);
        else if (*s == '&') fputs("&amp;", f);
        else fputc(*s, f);
    }
}

int yf_svg_line_chart(const char *path, const double *x, const double *y, int64_t n, const char *title,
                      const char *xlabel, const char *ylabel) {
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(x[i]) || !isfinite(y[i])) continue;
        x0 = fmin(x0, x[i]), x1 = fmax(x1, x[i]), y0 = fmin(y0, y[i]), y1 = fmax(y1, y[i]);
    }
    if (!(x0 <= x1)) x0 = 0, x1 = 1, y0 = 0, y1 = 1; /* nothing to plot: empty axes */
    if (x1 == x0) x0 -= 1, x1 += 1;
    if (y1 == y0) y0 -= 0.5, y1 += 0.5;
    double ys = nice_step(y1 - y0, 6), xs = nice_step(x1 - x0, 8);
    y0 = floor(y0 / ys) * ys, y1 = ceil(y1 / ys) * ys;

    const double W = 720, H = 420, L = 70, R = 20, T = 40, B = 50;
    const double pw = W - L - R, ph = H - T - B;
#define PX(v) (L + ((v) - x0) / (x1 - x0) * pw)
#define PY(v) (T + (1 - ((v) - y0) / (y1 - y0)) * ph)

    yf_atomic_file af;
    if (yf_atomic_open(&af, path)) return -1;
    FILE *f = af.f;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
               "font-family=\"sans-serif\" font-size=\"12\">\n", W, H, W, H);
    fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    fprintf(f, "<text x=\"%.0f\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">", W / 2);
    xml_text(f, title);
    fprintf(f, "</text>\n");
    for (double v = y0; v <= y1 + ys * 1e-6; v += ys) {
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", L, PY(v), W - R, PY(v));
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%.4g</text>\n", L - 6, PY(v) + 4, fabs(v) < ys * 1e-6 ? 0 : v);
    }
    for (double v = ceil(x0 / xs) * xs; v <= x1 + xs * 1e-6; v += xs) {
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", PX(v), T, PX(v), T + ph);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%.6g</text>\n", PX(v), T + ph + 18, v);
    }
    fprintf(f, "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" stroke=\"black\"/>\n", L, T, pw, ph);
    fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">", L + pw / 2, H - 10);
    xml_text(f, xlabel);
    fprintf(f, "</text>\n<text x=\"16\" y=\"%.0f\" text-anchor=\"middle\" transform=\"rotate(-90 16 %.0f)\">", T + ph / 2,
            T + ph / 2);
    xml_text(f, ylabel);
    fprintf(f, "</text>\n<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\" points=\"");
    int64_t shown = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(x[i]) || !isfinite(y[i])) continue;
        fprintf(f, "%s%.1f,%.1f", shown++ ? " " : "", PX(x[i]), PY(y[i]));
    }
    fprintf(f, "\"/>\n");
    if (shown == 1) /* a single point is invisible as a polyline */
        for (int64_t i = 0; i < n; i++)
            if (isfinite(x[i]) && isfinite(y[i]))
                fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"#1f77b4\"/>\n", PX(x[i]), PY(y[i]));
    fprintf(f, "</svg>\n");
#undef PX
#undef PY
    if (ferror(f)) {
        yf_atomic_abort(&af);
        return yf_errorf("%s: write failed", path);
    }
    return yf_atomic_commit(&af);
}
