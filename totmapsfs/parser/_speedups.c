/*
 * totmapsfs.parser._speedups: C implementation of totmapsfs.parser._reference.parse_smaps.
 *
 * The parsing rule is the docstring of _reference.parse_smaps; this module must
 * give identical results and raise identical exceptions (same class, same
 * message) on every input.  It differs only in how it gets there: one pass
 * over the buffer with the GIL released, into a fixed-size C table, with no
 * allocation per line; the Python dict is built afterwards.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

/* Keep in step with _reference.MAX_NAME_LEN / MAX_FIELDS. */
#define MAX_NAME_LEN 64
#define MAX_FIELDS 256

/* Texts at least this long are scanned with the GIL released (a 2000-mapping
   smaps is 1.5 MB: milliseconds). Shorter ones, a smaps_rollup (~1 KiB) above
   all, are scanned holding it: the scan takes well under a microsecond, less
   than handing the GIL to another thread and back, which a whole-system view
   would otherwise do for every process in each of its threads. */
#define RELEASE_GIL_FROM (64 * 1024)

/* PyLong_FromUnsignedLongLong takes the sums as unsigned long long. */
_Static_assert(sizeof(unsigned long long) >= sizeof(uint64_t), "u64 must fit");

typedef struct {
    uint64_t sum;
    size_t len;
    char name[MAX_NAME_LEN + 1]; /* NUL-terminated, for PyErr_Format("%s") */
} field_t;

typedef enum { SCAN_OK, SCAN_VALUE_OVERFLOW, SCAN_SUM_OVERFLOW, SCAN_TOO_MANY } scan_status_t;

/* Everything the scan produces; filled without the GIL, read with it. */
typedef struct {
    int nfields;
    int hint; /* index to try first: the kernel prints fields in the same order per mapping */
    scan_status_t status;
    size_t error_line; /* 1-based line of the first offending field line */
    field_t error_key;  /* and its name */
    field_t fields[MAX_FIELDS]; /* first-appearance order */
} table_t;

/* The class from totmapsfs.parser._reference, so both implementations raise the same one. */
static PyObject *SmapsParseError;

static int
is_name_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

static int
is_not_summable(const char *name, size_t len)
{
    static const struct {
        const char *name;
        size_t len;
    } skip[] = {{"Size", 4}, {"KernelPageSize", 14}, {"MMUPageSize", 11}};

    for (size_t i = 0; i < sizeof skip / sizeof skip[0]; i++)
        if (len == skip[i].len && memcmp(name, skip[i].name, len) == 0)
            return 1;
    return 0;
}

/*
 * Try to read a field line starting at *pp (a line start).  Returns 1 if the
 * line is one, with its name copied into f->name/len, its value in *value and
 * *overflow set if the value exceeds 2**64-1.  On return *pp points at or
 * before the line's end ('\n' or end), never past it: none of the bytes a field
 * line is made of can be '\n'.  The name is copied as it is checked, so even a
 * buffer that another thread mutates during the scan yields a valid name.
 */
static int
read_field_line(const unsigned char **pp, const unsigned char *end, field_t *f, uint64_t *value,
                int *overflow)
{
    const unsigned char *p = *pp;
    size_t len = 0;
    uint64_t v = 0;
    int ovf = 0;
    int ok = 0;

    while (p < end && len <= MAX_NAME_LEN) {
        unsigned char c = *p; /* read once: checked byte == copied byte */
        if (!is_name_char(c))
            break;
        f->name[len++] = (char)c;
        p++;
    }
    if (len == 0 || len > MAX_NAME_LEN || p == end || *p != ':')
        goto out;
    p++;
    /* Zero or more spaces: "%-16s%8lu" leaves none when a 16-character
     * name such as "Private_Hugetlb:" meets a value of 8+ digits. */
    while (p < end && *p == ' ')
        p++;

    const unsigned char *digits = p;
    while (p < end) {
        unsigned d = (unsigned)*p - '0';
        if (d > 9)
            break;
        /* v * 10 + d <= UINT64_MAX  <=>  v <= (UINT64_MAX - d) / 10.  Keep
           scanning after an overflow: the line may still turn out not to be
           a field line, and then it is not an error. */
        if (v > (UINT64_MAX - d) / 10)
            ovf = 1;
        else
            v = v * 10 + d;
        p++;
    }
    if (p == digits)
        goto out;
    if (end - p < 3 || memcmp(p, " kB", 3) != 0)
        goto out;
    p += 3;
    if (p != end && *p != '\n')
        goto out;

    f->name[len] = '\0';
    f->len = len;
    *value = v;
    *overflow = ovf;
    ok = 1;
out:
    *pp = p;
    return ok;
}

static int
find_field(table_t *t, const field_t *key)
{
    if (t->hint < t->nfields) {
        const field_t *f = &t->fields[t->hint];
        if (f->len == key->len && memcmp(f->name, key->name, key->len) == 0)
            return t->hint;
    }
    for (int i = 0; i < t->nfields; i++) {
        const field_t *f = &t->fields[i];
        if (f->len == key->len && memcmp(f->name, key->name, key->len) == 0)
            return i;
    }
    return -1;
}

/* Add one field line to the table.  Returns 0, or -1 after recording an error. */
static int
add_field(table_t *t, const field_t *key, uint64_t value, int overflow, size_t line)
{
    if (is_not_summable(key->name, key->len))
        return 0;
    /* Same check order as _reference.parse_smaps. */
    if (overflow) {
        t->status = SCAN_VALUE_OVERFLOW;
        goto fail;
    }
    int i = find_field(t, key);
    if (i < 0) {
        if (t->nfields >= MAX_FIELDS) {
            t->status = SCAN_TOO_MANY;
            goto fail;
        }
        i = t->nfields++;
        t->fields[i] = *key;
        t->fields[i].sum = 0;
    }
    field_t *f = &t->fields[i];
    if (f->sum > UINT64_MAX - value) {
        t->status = SCAN_SUM_OVERFLOW;
        goto fail;
    }
    f->sum += value;
    t->hint = i + 1;
    return 0;
fail:
    t->error_line = line;
    t->error_key = *key;
    return -1;
}

/* The GIL-free part: touches only the buffer and the table. */
static void
scan(table_t *t, const unsigned char *p, const unsigned char *end)
{
    size_t line = 1;
    field_t key;
    uint64_t value;
    int overflow;

    while (p < end) {
        if (read_field_line(&p, end, &key, &value, &overflow)) {
            if (add_field(t, &key, value, overflow, line) < 0)
                return;
        }
        /* p is within the current line: skip to the start of the next one. */
        if (p == end)
            return;
        const unsigned char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL)
            return;
        p = nl + 1;
        line++;
    }
}

static PyObject *
raise_scan_error(const table_t *t)
{
    switch (t->status) {
    case SCAN_VALUE_OVERFLOW:
        return PyErr_Format(PyExc_OverflowError, "line %zu: %s value exceeds 2**64-1",
                            t->error_line, t->error_key.name);
    case SCAN_SUM_OVERFLOW:
        return PyErr_Format(PyExc_OverflowError, "line %zu: sum of %s exceeds 2**64-1",
                            t->error_line, t->error_key.name);
    case SCAN_TOO_MANY:
        return PyErr_Format(SmapsParseError, "too many distinct fields (> %d)", MAX_FIELDS);
    case SCAN_OK:
        break;
    }
    PyErr_SetString(PyExc_SystemError, "_speedups: bad scan status");
    return NULL;
}

static PyObject *
build_dict(const table_t *t)
{
    PyObject *dict = PyDict_New();
    if (dict == NULL)
        return NULL;
    for (int i = 0; i < t->nfields; i++) {
        const field_t *f = &t->fields[i];
        /* Names were checked to be [A-Za-z0-9_] while they were copied. */
        PyObject *key = PyUnicode_DecodeASCII(f->name, (Py_ssize_t)f->len, NULL);
        PyObject *val = PyLong_FromUnsignedLongLong(f->sum);
        int rc = (key && val) ? PyDict_SetItem(dict, key, val) : -1;
        Py_XDECREF(key);
        Py_XDECREF(val);
        if (rc < 0) {
            Py_DECREF(dict);
            return NULL;
        }
    }
    return dict;
}

/* The scan runs at ~2 GB/s or ~15% slower depending on how GCC lays out its
   loops: unrelated code added to this file once cost that much.  Aligning the function
   (into which the scan is inlined) brought it back and keeps it stable. */
#if defined(__GNUC__)
#define HOT_FUNCTION __attribute__((aligned(64)))
#else
#define HOT_FUNCTION
#endif

static PyObject *HOT_FUNCTION
parse_smaps(PyObject *module, PyObject *data)
{
    (void)module;
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0)
        return NULL;

    /* ~19 KiB: on the heap rather than on a possibly small thread stack. */
    table_t *t = PyMem_Malloc(sizeof *t);
    if (t == NULL) {
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    t->nfields = 0;
    t->hint = 0;
    t->status = SCAN_OK;

    /* The exported buffer stays valid (and a bytearray cannot be resized)
       until PyBuffer_Release, so it is safe to read without the GIL. */
    const unsigned char *buf = view.buf;
    if (view.len >= RELEASE_GIL_FROM) {
        Py_BEGIN_ALLOW_THREADS
        scan(t, buf, buf + view.len);
        Py_END_ALLOW_THREADS
    } else if (view.len > 0) { /* an empty buffer may come with buf == NULL: no arithmetic on it */
        scan(t, buf, buf + view.len);
    }
    PyBuffer_Release(&view);

    PyObject *result = t->status == SCAN_OK ? build_dict(t) : raise_scan_error(t);
    PyMem_Free(t);
    return result;
}

/* In _format.c. */
__attribute__((visibility("hidden"))) PyObject *format_totmaps(PyObject *module, PyObject *fields);
/* In _mappings.c. */
__attribute__((visibility("hidden"))) PyObject *parse_smaps_mappings(PyObject *module, PyObject *data);

PyDoc_STRVAR(parse_smaps_doc,
             "parse_smaps(data, /)\n--\n\n"
             "Sum the fields of smaps text into {name: total kB}.\n\n"
             "C implementation of totmapsfs.parser._reference.parse_smaps (see its docstring\n"
             "for the rule); releases the GIL while scanning.");

static PyMethodDef speedups_methods[] = {
    {"parse_smaps", parse_smaps, METH_O, parse_smaps_doc},
    {"format_totmaps", format_totmaps, METH_O,
     "format_totmaps(fields, /)\n--\n\nC implementation of totmapsfs.parser._format.format_totmaps."},
    {"parse_smaps_mappings", parse_smaps_mappings, METH_O,
     "parse_smaps_mappings(data, /)\n--\n\nC implementation of totmapsfs.parser._mappings.parse_smaps_mappings."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "totmapsfs.parser._speedups",
    .m_doc = "C implementation of totmapsfs.parser._reference.parse_smaps.",
    .m_size = -1,
    .m_methods = speedups_methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    /* Single-phase init with one global: the class lives in _reference and is
       kept alive by this reference for the life of the process. */
    if (SmapsParseError == NULL) {
        PyObject *reference = PyImport_ImportModule("totmapsfs.parser._reference");
        if (reference == NULL)
            return NULL;
        PyObject *cls = PyObject_GetAttrString(reference, "SmapsParseError");
        Py_DECREF(reference);
        if (cls == NULL)
            return NULL;
        if (!PyExceptionClass_Check(cls)) {
            Py_DECREF(cls);
            PyErr_SetString(PyExc_TypeError, "totmapsfs.parser._reference.SmapsParseError is not an exception class");
            return NULL;
        }
        SmapsParseError = cls;
    }

    PyObject *m = PyModule_Create(&speedups_module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "SmapsParseError", SmapsParseError) < 0 ||
        PyModule_AddIntConstant(m, "MAX_FIELDS", MAX_FIELDS) < 0 ||
        PyModule_AddIntConstant(m, "MAX_NAME_LEN", MAX_NAME_LEN) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
