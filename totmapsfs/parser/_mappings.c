/*
 * totmapsfs.parser._speedups, the per-mapping half: parse_smaps_mappings, the
 * C copy of totmapsfs.parser._mappings.parse_smaps_mappings (its docstring is
 * the rule; tests/unit/test_mappings.py and the fuzz target hold them equal).
 *
 * One pass over the buffer, the GIL released for long texts as parse_smaps
 * does: header lines select a key (_mapkeys.c: a hash table of keys copied
 * out of the buffer), field lines add to that key's sums (here). The Python
 * dicts are built at the end. Kept apart from _speedups.c's parse_smaps, whose scan is tuned on
 * its own (see HOT_FUNCTION there).
 */
#include "_mappings.h"

#include <string.h>

#define RELEASE_GIL_FROM (64 * 1024)

static int
is_name_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

/* A field line [p, eol): its name in *f and value in *v (*ovf if above 2**64-1). */
static int
read_field(const unsigned char *p, const unsigned char *eol, mname_t *f, uint64_t *v, int *ovf)
{
    size_t len = 0;
    while (p < eol && len <= MAX_NAME_LEN && is_name_char(*p))
        f->name[len++] = (char)*p++;
    if (len == 0 || len > MAX_NAME_LEN || p == eol || *p != ':')
        return 0;
    p++;
    while (p < eol && *p == ' ')
        p++;
    const unsigned char *digits = p;
    uint64_t x = 0;
    int o = 0;
    for (; p < eol && *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (x > (UINT64_MAX - d) / 10)
            o = 1;
        else
            x = x * 10 + d;
    }
    if (p == digits || eol - p != 3 || memcmp(p, " kB", 3) != 0)
        return 0;
    f->name[len] = '\0';
    f->len = len;
    *v = x;
    *ovf = o;
    return 1;
}

static int
not_summable(const mname_t *f)
{
    return (f->len == 4 && memcmp(f->name, "Size", 4) == 0) ||
           (f->len == 14 && memcmp(f->name, "KernelPageSize", 14) == 0) ||
           (f->len == 11 && memcmp(f->name, "MMUPageSize", 11) == 0);
}

static int
name_index(mtable_t *t, const mname_t *f)
{
    int h = t->name_hint;
    if (h < t->nnames && t->names[h].len == f->len && memcmp(t->names[h].name, f->name, f->len) == 0)
        return h;
    for (int i = 0; i < t->nnames; i++)
        if (t->names[i].len == f->len && memcmp(t->names[i].name, f->name, f->len) == 0)
            return i;
    return -1;
}

/* Adds a field line to key ``k``; 0, or -1 with t->status set. */
static int
add(mtable_t *t, mkey_t *k, const mname_t *f, uint64_t v, int ovf, size_t line)
{
    if (ovf) {
        t->status = M_VALUE_OVERFLOW;
        goto fail;
    }
    int g = name_index(t, f);
    if (g < 0) {
        if (t->nnames >= MAX_FIELDS) {
            t->status = M_TOO_MANY;
            goto fail;
        }
        g = t->nnames++;
        t->names[g] = *f;
    }
    t->name_hint = g + 1;
    int s = -1;
    if (k->hint < k->n && k->field[k->hint] == g)
        s = k->hint;
    for (int i = 0; s < 0 && i < k->n; i++)
        if (k->field[i] == g)
            s = i;
    if (s < 0) {
        if (k->n == k->cap) {
            int cap = k->cap ? k->cap * 2 : 32;
            uint16_t *fi = PyMem_RawRealloc(k->field, (size_t)cap * sizeof *fi);
            if (fi == NULL) {
                t->status = M_NOMEM;
                return -1;
            }
            k->field = fi;
            uint64_t *su = PyMem_RawRealloc(k->sum, (size_t)cap * sizeof *su);
            if (su == NULL) {
                t->status = M_NOMEM;
                return -1;
            }
            k->sum = su;
            k->cap = cap;
        }
        s = k->n++;
        k->field[s] = (uint16_t)g;
        k->sum[s] = 0;
    }
    if (k->sum[s] > UINT64_MAX - v) {
        t->status = M_SUM_OVERFLOW;
        goto fail;
    }
    k->sum[s] += v;
    k->hint = s + 1;
    return 0;
fail:
    t->error_line = line;
    memcpy(t->error_text, f->name, f->len + 1);
    return -1;
}

static void
scan(mtable_t *t, const unsigned char *p, const unsigned char *end)
{
    size_t line = 1;
    long current = -1;
    mname_t f;
    uint64_t v;
    int ovf;
    for (; p <= end; line++) {
        const unsigned char *eol = memchr(p, '\n', (size_t)(end - p));
        if (eol == NULL)
            eol = end;
        const unsigned char *dev, *ino, *name;
        size_t dev_len, ino_len, name_len;
        if (mappings_read_header(p, eol, &dev, &dev_len, &ino, &ino_len, &name, &name_len)) {
            size_t off = t->arena_len;
            if (mappings_put_key(t, dev, dev_len, ino, ino_len, name, name_len) < 0 || (current = mappings_intern_key(t, off)) < 0) {
                t->status = M_NOMEM;
                return;
            }
        } else if (current >= 0 && read_field(p, eol, &f, &v, &ovf) && !not_summable(&f)) {
            if (add(t, &t->keys[current], &f, v, ovf, line) < 0)
                return;
        }
        if (eol == end)
            return;
        p = eol + 1;
    }
}

static void
free_table(mtable_t *t)
{
    for (size_t k = 0; k < t->nkeys; k++) {
        PyMem_RawFree(t->keys[k].field);
        PyMem_RawFree(t->keys[k].sum);
    }
    PyMem_RawFree(t->keys);
    PyMem_RawFree(t->slots);
    PyMem_RawFree(t->arena);
    PyMem_RawFree(t);
}

static PyObject *
build(const mtable_t *t)
{
    PyObject *names[MAX_FIELDS];
    PyObject *out = PyDict_New();
    int made = 0;
    if (out == NULL)
        return NULL;
    for (; made < t->nnames; made++) {
        names[made] = PyUnicode_DecodeASCII(t->names[made].name, (Py_ssize_t)t->names[made].len, NULL);
        if (names[made] == NULL)
            goto fail;
    }
    for (size_t i = 0; i < t->nkeys; i++) {
        const mkey_t *k = &t->keys[i];
        PyObject *inner = PyDict_New();
        PyObject *key = inner ? PyUnicode_DecodeFSDefaultAndSize(t->arena + k->off, (Py_ssize_t)k->len) : NULL;
        int rc = key ? PyDict_SetItem(out, key, inner) : -1;
        Py_XDECREF(key);
        for (int s = 0; rc == 0 && s < k->n; s++) {
            PyObject *val = PyLong_FromUnsignedLongLong(k->sum[s]);
            rc = val ? PyDict_SetItem(inner, names[k->field[s]], val) : -1;
            Py_XDECREF(val);
        }
        Py_XDECREF(inner);
        if (rc < 0)
            goto fail;
    }
    for (int i = 0; i < made; i++)
        Py_DECREF(names[i]);
    return out;
fail:
    for (int i = 0; i < made; i++)
        Py_DECREF(names[i]);
    Py_DECREF(out);
    return NULL;
}

/* SmapsParseError from _reference, looked up when raised: the module's init stays parse_smaps's. */
static void
raise_too_many(void)
{
    PyObject *reference = PyImport_ImportModule("totmapsfs.parser._reference");
    PyObject *cls = reference ? PyObject_GetAttrString(reference, "SmapsParseError") : NULL;
    Py_XDECREF(reference);
    if (cls != NULL) {
        PyErr_Format(cls, "too many distinct fields (> %d)", MAX_FIELDS);
        Py_DECREF(cls);
    }
}

PyObject *
parse_smaps_mappings(PyObject *module, PyObject *data)
{
    (void)module;
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    mtable_t *t = PyMem_RawCalloc(1, sizeof *t);
    if (t == NULL) {
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    const unsigned char *buf = view.buf;
    if (view.len >= RELEASE_GIL_FROM) {
        Py_BEGIN_ALLOW_THREADS
        scan(t, buf, buf + view.len);
        Py_END_ALLOW_THREADS
    } else if (view.len > 0) {
        scan(t, buf, buf + view.len);
    }
    PyBuffer_Release(&view);
    PyObject *result = NULL;
    switch (t->status) {
    case M_OK:
        result = build(t);
        break;
    case M_VALUE_OVERFLOW:
        PyErr_Format(PyExc_OverflowError, "line %zu: %s value exceeds 2**64-1", t->error_line, t->error_text);
        break;
    case M_SUM_OVERFLOW:
        PyErr_Format(PyExc_OverflowError, "line %zu: sum of %s exceeds 2**64-1", t->error_line, t->error_text);
        break;
    case M_TOO_MANY:
        raise_too_many();
        break;
    case M_NOMEM:
        PyErr_NoMemory();
        break;
    }
    free_table(t);
    return result;
}
