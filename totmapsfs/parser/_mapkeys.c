/*
 * parse_smaps_mappings's key side: which header lines start a mapping, the key
 * each gets (_mappings.mapping_key's rules, in C) and a hash table of the keys,
 * copied out of the buffer into one arena. No Python object is touched here:
 * this runs with the GIL released (see _mappings.c).
 */
#include "_mappings.h"

#include <string.h>

static int
is_hex(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

static const unsigned char *
skip_hex(const unsigned char *p, const unsigned char *eol)
{
    while (p < eol && is_hex(*p))
        p++;
    return p;
}

/* A run of lowercase hex at p followed by ``sep``: the byte after sep, or NULL. */
static const unsigned char *
hex_then(const unsigned char *p, const unsigned char *eol, unsigned char sep)
{
    const unsigned char *q = skip_hex(p, eol);
    return (q == p || q == eol || *q != sep) ? NULL : q + 1;
}

/* A header line [p, eol): 1 with the device, inode and name spans, else 0. */
int
mappings_read_header(const unsigned char *p, const unsigned char *eol, const unsigned char **dev, size_t *dev_len,
            const unsigned char **ino, size_t *ino_len, const unsigned char **name, size_t *name_len)
{
    if ((p = hex_then(p, eol, '-')) == NULL || (p = hex_then(p, eol, ' ')) == NULL)
        return 0;
    for (int i = 0; i < 4; i++, p++) /* the permissions: four bytes, none a space */
        if (p == eol || *p == ' ')
            return 0;
    if (p == eol || *p++ != ' ' || (p = hex_then(p, eol, ' ')) == NULL)
        return 0;
    *dev = p;
    if ((p = hex_then(p, eol, ':')) == NULL || (p = hex_then(p, eol, ' ')) == NULL)
        return 0;
    *dev_len = (size_t)(p - 1 - *dev);
    *ino = p;
    while (p < eol && *p >= '0' && *p <= '9')
        p++;
    if (p == *ino)
        return 0;
    *ino_len = (size_t)(p - *ino);
    if (p < eol) {
        if (*p != ' ')
            return 0;
        p++;
    }
    while (p < eol && *p == ' ')
        p++;
    *name = p;
    *name_len = (size_t)(eol - p);
    return 1;
}

static int
arena_put(mtable_t *t, const void *bytes, size_t len)
{
    if (t->arena_cap - t->arena_len < len) {
        size_t cap = t->arena_cap ? t->arena_cap : 4096;
        while (cap - t->arena_len < len) {
            if (cap > SIZE_MAX / 2)
                return -1;
            cap *= 2;
        }
        char *a = PyMem_RawRealloc(t->arena, cap);
        if (a == NULL)
            return -1;
        t->arena = a;
        t->arena_cap = cap;
    }
    memcpy(t->arena + t->arena_len, bytes, len);
    t->arena_len += len;
    return 0;
}

#define PUT(t, s, n)                                                                                                   \
    do {                                                                                                               \
        if (arena_put((t), (s), (n)) < 0)                                                                              \
            return -1;                                                                                                 \
    } while (0)

/* Appends _mappings.mapping_key(device, inode, name) to the arena. */
int
mappings_put_key(mtable_t *t, const unsigned char *dev, size_t dev_len, const unsigned char *ino, size_t ino_len,
        const unsigned char *name, size_t name_len)
{
    static const char deleted[] = " (deleted)";
    const size_t dl = sizeof deleted - 1;
    if (name_len == 0) {
        PUT(t, "[anon]", 6);
        return 0;
    }
    if (name_len < dl || memcmp(name + name_len - dl, deleted, dl) != 0) {
        PUT(t, name, name_len);
        return 0;
    }
    size_t base = name_len - dl;
    if (base == 9 && memcmp(name, "/dev/zero", 9) == 0) {
        PUT(t, "[anon_shmem]", 12);
    } else if (base >= 7 && memcmp(name, "/memfd:", 7) == 0) {
        PUT(t, name + 1, base - 1);
    } else if (base >= 5 && memcmp(name, "/SYSV", 5) == 0) {
        PUT(t, name, base);
    } else {
        PUT(t, name, base);
        PUT(t, " (deleted ", 10);
        PUT(t, dev, dev_len);
        PUT(t, ":", 1);
        PUT(t, ino, ino_len);
        PUT(t, ")", 1);
    }
    return 0;
}

static uint64_t
fnv1a(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

static int
grow_slots(mtable_t *t)
{
    size_t n = t->nslots ? t->nslots * 2 : 256;
    int32_t *s = PyMem_RawCalloc(n, sizeof *s);
    if (s == NULL)
        return -1;
    for (size_t k = 0; k < t->nkeys; k++) {
        size_t i = (size_t)t->keys[k].hash & (n - 1);
        while (s[i])
            i = (i + 1) & (n - 1);
        s[i] = (int32_t)(k + 1);
    }
    PyMem_RawFree(t->slots);
    t->slots = s;
    t->nslots = n;
    return 0;
}

/* The index of the key just appended to the arena at ``off``, the arena rolled back if it existed. */
long
mappings_intern_key(mtable_t *t, size_t off)
{
    size_t len = t->arena_len - off;
    uint64_t h = fnv1a(t->arena + off, len);
    if (t->nkeys * 2 >= t->nslots && grow_slots(t) < 0)
        return -1;
    size_t i = (size_t)h & (t->nslots - 1);
    while (t->slots[i]) {
        mkey_t *k = &t->keys[t->slots[i] - 1];
        if (k->hash == h && k->len == len && memcmp(t->arena + k->off, t->arena + off, len) == 0) {
            t->arena_len = off;
            return t->slots[i] - 1;
        }
        i = (i + 1) & (t->nslots - 1);
    }
    if (t->nkeys == t->keys_cap) {
        size_t cap = t->keys_cap ? t->keys_cap * 2 : 64;
        mkey_t *keys = PyMem_RawRealloc(t->keys, cap * sizeof *keys);
        if (keys == NULL)
            return -1;
        t->keys = keys;
        t->keys_cap = cap;
    }
    if (t->nkeys >= INT32_MAX)
        return -1;
    mkey_t *k = &t->keys[t->nkeys];
    memset(k, 0, sizeof *k);
    k->off = off;
    k->len = len;
    k->hash = h;
    t->slots[i] = (int32_t)(t->nkeys + 1);
    return (long)t->nkeys++;
}
