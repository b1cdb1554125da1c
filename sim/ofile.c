/* ofile.c: write to "path.tmp", rename(2) to path on commit. */
#include "ofile.h"

#include <errno.h>
#include <string.h>

int ofile_open(struct ofile *o, const char *path)
{
    if (!o)
        return -EINVAL;
    o->f = NULL;
    o->path[0] = '\0';
    o->tmp[0] = '\0';
    if (!path || !path[0])
        return -EINVAL;
    size_t len = strlen(path);
    if (len >= sizeof(o->path))
        return -ENAMETOOLONG;
    memcpy(o->path, path, len + 1);
    memcpy(o->tmp, path, len);
    memcpy(o->tmp + len, ".tmp", 5);
    errno = 0;
    o->f = fopen(o->tmp, "w");
    if (!o->f) {
        int err = errno ? errno : EIO;
        o->path[0] = '\0';
        o->tmp[0] = '\0';
        return -err;
    }
    return 0;
}

int ofile_commit(struct ofile *o)
{
    if (!o || !o->f)
        return -EBADF;
    int err = 0;
    errno = 0;
    if (fflush(o->f) != 0 || ferror(o->f))
        err = errno ? errno : EIO;
    errno = 0;
    if (fclose(o->f) != 0 && !err)
        err = errno ? errno : EIO;
    o->f = NULL;
    errno = 0;
    if (!err && rename(o->tmp, o->path) != 0)
        err = errno ? errno : EIO;
    if (err)
        remove(o->tmp);        /* may already be gone; nothing more to do then */
    o->path[0] = '\0';
    o->tmp[0] = '\0';
    return -err;
}

void ofile_abort(struct ofile *o)
{
    if (!o || !o->f)
        return;
    fclose(o->f);
    o->f = NULL;
    remove(o->tmp);
    o->path[0] = '\0';
    o->tmp[0] = '\0';
}
