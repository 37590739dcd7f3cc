/* yuanft merge: not built yet (stub). */
#include <stdio.h>

#include "commands.h"

int cmd_merge(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "yuanft merge: not implemented yet\n");
    return 2;
}
