/* page: the page served at GET / — paste a résumé, press Extract, see the
 * entities highlighted in the text and listed by type (src/serve/page.html:
 * HTML, CSS and JavaScript in one file, no external assets, Chinese and
 * English). Built into the binary (page.c). */
#ifndef YF_PAGE_H
#define YF_PAGE_H

/* The page's text (static, NUL-terminated). */
const char *yf_serve_page(void);

#endif
