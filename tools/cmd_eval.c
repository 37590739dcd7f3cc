/* yuanft eval: not built yet (stub). */
#include <stdio.h>

#include "commands.h"

int cmd_eval(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "yuanft eval: not implemented yet\n");
    return 2;
}
