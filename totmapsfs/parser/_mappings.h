/*
 * The per-mapping parser's shared parts (parse_smaps_mappings, in _mappings.c):
 * the table one pass fills, and the key side (_mapkeys.c), which reads a header
 * line and interns its mapping key.
 */
#ifndef TOTMAPSFS_MAPPINGS_H
#define TOTMAPSFS_MAPPINGS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stddef.h>
#include <stdint.h>

#define MAX_NAME_LEN 64 /* _reference.MAX_NAME_LEN */
#define MAX_FIELDS 256  /* _reference.MAX_FIELDS */

#define HIDDEN __attribute__((visibility("hidden")))

typedef enum { M_OK, M_VALUE_OVERFLOW, M_SUM_OVERFLOW, M_TOO_MANY, M_NOMEM } m_status_t;

typedef struct {
    size_t off, len; /* the key's bytes in the arena */
    uint64_t hash;
    int n, cap, hint;
    uint16_t *field; /* global field index of each slot, first-appearance order under this key */
    uint64_t *sum;
} mkey_t;

typedef struct {
    size_t len;
    char name[MAX_NAME_LEN + 1];
} mname_t;

typedef struct {
    m_status_t status;
    size_t error_line;
    int error_name; /* index into names, or -1 */
    char error_text[MAX_NAME_LEN + 1];
    int nnames, name_hint;
    mname_t names[MAX_FIELDS];
    mkey_t *keys;
    size_t nkeys, keys_cap;
    int32_t *slots; /* open addressing: key index + 1, 0 empty */
    size_t nslots;
    char *arena;
    size_t arena_len, arena_cap;
} mtable_t;

/* _mapkeys.c: a header line [p, eol), 1 with the device, inode and name spans, else 0. */
HIDDEN int mappings_read_header(const unsigned char *p, const unsigned char *eol, const unsigned char **dev,
                                size_t *dev_len, const unsigned char **ino, size_t *ino_len, const unsigned char **name,
                                size_t *name_len);
/* _mapkeys.c: appends _mappings.mapping_key(device, inode, name) to the arena; 0, or -1 out of memory. */
HIDDEN int mappings_put_key(mtable_t *t, const unsigned char *dev, size_t dev_len, const unsigned char *ino,
                            size_t ino_len, const unsigned char *name, size_t name_len);
/* _mapkeys.c: the index of the key just appended at ``off`` (the arena rolled back if it existed), or -1. */
HIDDEN long mappings_intern_key(mtable_t *t, size_t off);

HIDDEN PyObject *parse_smaps_mappings(PyObject *module, PyObject *data);

#endif
