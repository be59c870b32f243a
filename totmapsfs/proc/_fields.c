/*
 * totmapsfs.proc._speedups, the text half: /proc/<pid>/stat and status to the
 * tuples of proc/_text.py's Stat and Status, by the same rules (the reference;
 * tests/unit/test_proc_text.py holds them equal on live and generated text).
 */
#include "_proc.h"

/* bytes.split()'s whitespace. */
static int
is_blank(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\x0b' || c == '\x0c';
}

/* int(bytes(p[0:len]), base), exactly: PyLong_FromString on a NUL-terminated
   copy. A NUL inside is an error for int() too (the copy would hide it). */
static PyObject *
to_int(const char *p, size_t len, int base)
{
    char stack[64];
    char *copy = len < sizeof stack ? stack : PyMem_Malloc(len + 1);
    if (copy == NULL)
        return PyErr_NoMemory();
    PyObject *result = NULL;
    int ascii = 1;
    for (size_t i = 0; i < len; i++)
        ascii &= (unsigned char)p[i] < 0x80;
    if (!ascii || memchr(p, '\0', len) != NULL) {
        /* int() refuses these bytes too; PyLong_FromString's message would
           decode them as UTF-8 and fail with another class of error. */
        PyErr_SetString(PyExc_ValueError, "not a number: a NUL or non-ASCII byte in it");
    } else {
        memcpy(copy, p, len);
        copy[len] = '\0';
        char *end = NULL;
        result = PyLong_FromString(copy, &end, base);
        if (result != NULL && end != copy + len) { /* PyLong_FromString stops at trailing junk */
            Py_CLEAR(result);
            PyErr_Format(PyExc_ValueError, "not a number: %.40s", copy);
        }
    }
    if (copy != stack)
        PyMem_Free(copy);
    return result;
}

/* The next whitespace-separated token of p[*i:len] (as str.split() finds
   them): its start in *start, *i moved past it; its length, 0 at the end. */
static size_t
next_token(const char *p, size_t len, size_t *i, size_t *start)
{
    while (*i < len && is_blank((unsigned char)p[*i]))
        (*i)++;
    *start = *i;
    while (*i < len && !is_blank((unsigned char)p[*i]))
        (*i)++;
    return *i - *start;
}

/* The tuple of int(x, base) for x in field.split(). */
static PyObject *
to_ints(const char *p, size_t len, int base)
{
    PyObject *list = PyList_New(0);
    if (list == NULL)
        return NULL;
    size_t i = 0, start, n;
    while ((n = next_token(p, len, &i, &start)) > 0) {
        PyObject *value = to_int(p + start, n, base);
        if (value == NULL || PyList_Append(list, value) < 0) {
            Py_XDECREF(value);
            Py_DECREF(list);
            return NULL;
        }
        Py_DECREF(value);
    }
    PyObject *tuple = PyList_AsTuple(list);
    Py_DECREF(list);
    return tuple;
}

/* --- stat ------------------------------------------------------------------ */

PyObject *
stat_fields(const char *data, size_t len)
{
    /* comm may hold spaces and parentheses: the fields start after the last ')'. */
    size_t from = 0;
    for (size_t i = len; i > 0; i--) {
        if (data[i - 1] == ')') {
            from = i;
            break;
        }
    }
    const char *tok[20];
    size_t toklen[20];
    int n = 0;
    size_t i = from, at, l;
    while (n < 20 && (l = next_token(data, len, &i, &at)) > 0) {
        tok[n] = data + at;
        toklen[n] = l;
        n++;
    }
    if (n < 20) {
        /* Count them all, for the same message as the reference. */
        Py_ssize_t total = n;
        while (next_token(data, len, &i, &at) > 0)
            total++;
        return PyErr_Format(PyExc_ValueError, "stat: %zd fields after the command name, 20 wanted", total);
    }
    PyObject *state = PyUnicode_DecodeASCII(tok[0], (Py_ssize_t)toklen[0], "replace");
    PyObject *minflt = state ? to_int(tok[7], toklen[7], 10) : NULL;
    PyObject *majflt = minflt ? to_int(tok[9], toklen[9], 10) : NULL;
    PyObject *start = majflt ? to_int(tok[19], toklen[19], 10) : NULL;
    PyObject *result = start ? PyTuple_Pack(4, state, minflt, majflt, start) : NULL;
    Py_XDECREF(state);
    Py_XDECREF(minflt);
    Py_XDECREF(majflt);
    Py_XDECREF(start);
    return result;
}

/* --- status ------------------------------------------------------------------ */

enum { NAME, TGID, UID, GID, CAPPRM, CAPEFF, NSTGID, NSPID, NKEYS };
static const struct {
    const char *key;
    size_t len;
} keys[NKEYS] = {
    {"Name:", 5},   {"Tgid:", 5},   {"Uid:", 4},     {"Gid:", 4},
    {"CapPrm:", 7}, {"CapEff:", 7}, {"NStgid:", 7}, {"NSpid:", 6},
};

static PyObject *
ids(const char *p, size_t len, int present)
{
    if (!present)
        return Py_BuildValue("(iiii)", 0, 0, 0, 0);
    PyObject *all = to_ints(p, len, 10);
    if (all == NULL)
        return NULL;
    if (PyTuple_GET_SIZE(all) < 4) {
        PyErr_Format(PyExc_ValueError, "status: %zd ids where 4 are printed", PyTuple_GET_SIZE(all));
        Py_DECREF(all);
        return NULL;
    }
    PyObject *four = PyTuple_GetSlice(all, 0, 4);
    Py_DECREF(all);
    return four;
}

static PyObject *
number(const char *p, size_t len, int present, int base)
{
    return present ? to_int(p, len, base) : PyLong_FromLong(0);
}

/* A line of task_mem()'s (fs/proc/task_mmu.c) or hugetlb_report_usage()'s:
   what the memory generation is made of, whatever the kernel prints after. */
static int
is_mm_counter(const char *line, size_t len)
{
    return (len >= 2 && memcmp(line, "Vm", 2) == 0) || (len >= 3 && memcmp(line, "Rss", 3) == 0) ||
           (len >= 13 && memcmp(line, "HugetlbPages:", 13) == 0);
}

PyObject *
status_fields(const char *data, size_t len)
{
    /* A missing key's slot is passed on (number() and ids() then ignore it): defined, not garbage. */
    const char *val[NKEYS] = {NULL};
    size_t vlen[NKEYS] = {0};
    int found[NKEYS] = {0};
    /* The memory counters block (_text.py, _MM_BLOCK): the first run of lines
       named Vm*, Rss* or HugetlbPages:, from the "\n" before its first line
       to the "\n" after its last (or the end). */
    const char *vm = NULL, *vm_end = NULL;

    size_t i = 0;
    while (i < len) {
        const char *line = data + i;
        const char *nl = memchr(line, '\n', len - i);
        size_t linelen = nl ? (size_t)(nl - line) : len - i;
        for (int k = 0; k < NKEYS; k++) {
            if (!found[k] && linelen >= keys[k].len && memcmp(line, keys[k].key, keys[k].len) == 0) {
                found[k] = 1;
                val[k] = line + keys[k].len;
                vlen[k] = linelen - keys[k].len;
                break;
            }
        }
        if (i > 0) { /* the reference looks for "\n" + key: never on the first line */
            int counter = is_mm_counter(line, linelen);
            if (vm == NULL && counter)
                vm = line - 1;
            else if (vm != NULL && vm_end == NULL && !counter)
                vm_end = line - 1;
        }
        i += linelen + 1;
    }

    PyObject *name;
    if (found[NAME]) {
        const char *p = val[NAME];
        size_t n = vlen[NAME];
        while (n > 0 && is_blank((unsigned char)*p)) {
            p++;
            n--;
        }
        while (n > 0 && is_blank((unsigned char)p[n - 1]))
            n--;
        name = PyUnicode_DecodeUTF8(p, (Py_ssize_t)n, "replace");
    } else {
        name = PyUnicode_FromStringAndSize("", 0);
    }
    PyObject *tgid = name ? number(val[TGID], vlen[TGID], found[TGID], 10) : NULL;
    PyObject *uids = tgid ? ids(val[UID], vlen[UID], found[UID]) : NULL;
    PyObject *gids = uids ? ids(val[GID], vlen[GID], found[GID]) : NULL;
    PyObject *prm = gids ? number(val[CAPPRM], vlen[CAPPRM], found[CAPPRM], 16) : NULL;
    PyObject *eff = prm ? number(val[CAPEFF], vlen[CAPEFF], found[CAPEFF], 16) : NULL;
    PyObject *mm = NULL;
    if (eff != NULL) {
        if (vm == NULL) {
            mm = PyBytes_FromStringAndSize("", 0);
        } else {
            if (vm_end == NULL) /* the block ran to the end: without the text's last "\n", if it has one */
                vm_end = data[len - 1] == '\n' ? data + len - 1 : data + len;
            mm = PyBytes_FromStringAndSize(vm, vm_end - vm);
        }
    }
    PyObject *nstgid = mm ? (found[NSTGID] ? to_ints(val[NSTGID], vlen[NSTGID], 10) : PyTuple_New(0)) : NULL;
    PyObject *nspid = nstgid ? (found[NSPID] ? to_ints(val[NSPID], vlen[NSPID], 10) : PyTuple_New(0)) : NULL;
    PyObject *result = nspid ? PyTuple_Pack(9, name, tgid, uids, gids, prm, eff, mm, nstgid, nspid) : NULL;
    Py_XDECREF(name);
    Py_XDECREF(tgid);
    Py_XDECREF(uids);
    Py_XDECREF(gids);
    Py_XDECREF(prm);
    Py_XDECREF(eff);
    Py_XDECREF(mm);
    Py_XDECREF(nstgid);
    Py_XDECREF(nspid);
    return result;
}
