/* trympi.c: the log line of TRY_MPI (see trympi.h). */
#include "trympi.h"

#include <stdio.h>

void trympi_log(int code, const char *file, int line)
{
    char host[MPI_MAX_PROCESSOR_NAME] = "?", text[MPI_MAX_ERROR_STRING] = "?";
    int len = 0, rank = -1;
    MPI_Get_processor_name(host, &len);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Error_string(code, text, &len);
    fprintf(stderr, "%s:%d %s:%d: %s\n", host, rank, file, line, text);
}
