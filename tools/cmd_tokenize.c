/* yuanft tokenize: not built yet (stub). */
#include <stdio.h>

#include "commands.h"

int cmd_tokenize(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "yuanft tokenize: not implemented yet\n");
    return 2;
}
