/* yuanft score: not built yet (stub). */
#include <stdio.h>

#include "commands.h"

int cmd_score(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "yuanft score: not implemented yet\n");
    return 2;
}
