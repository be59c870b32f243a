/*
 * What the C half of the proc reader shares between its files (_speedups.c:
 * reads and the module; _fields.c: stat and status text to fields; _batch.c:
 * many processes a call). Nothing here is exported from the extension.
 */
#ifndef TOTMAPSFS_PROC_H
#define TOTMAPSFS_PROC_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SMALL 4096 /* status is ~1.5 KiB, stat ~300 B: one read, on the stack */

typedef struct {
    char *data;
    size_t len;
    char small[SMALL];
} file_t;

#define HIDDEN __attribute__((visibility("hidden")))

/* _speedups.c */
HIDDEN void file_free(file_t *f);
HIDDEN int slurp_flags(int dirfd, const char *name, file_t *f, int flags);
HIDDEN int slurp(int dirfd, const char *name, file_t *f);
HIDDEN PyObject *oserror(int err, const char *name);

/* _fields.c: the tuples of proc/_text.py's Stat and Status, or NULL with an exception set */
HIDDEN PyObject *stat_fields(const char *data, size_t len);
HIDDEN PyObject *status_fields(const char *data, size_t len);

/* _batch.c: the module function of the same name */
HIDDEN PyObject *probe_many(PyObject *module, PyObject *args);

#endif
