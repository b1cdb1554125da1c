/* zero_line.h: long test lines for the line-length limits of the text formats. */
#ifndef MOESIM_ZERO_LINE_H
#define MOESIM_ZERO_LINE_H

#include <string.h>

/* head, then `zeros` '0' characters, then tail, into text (large enough); returns text. */
static inline char *zero_line(char *text, const char *head, size_t zeros, const char *tail)
{
    size_t h = strlen(head);

    memcpy(text, head, h);
    memset(text + h, '0', zeros);
    strcpy(text + h + zeros, tail);
    return text;
}

#endif
