/*
 * totmapsfs.parser._speedups, the format half: format_totmaps. The parse half
 * and the module are in _speedups.c.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdio.h>
#include <string.h>

__attribute__((visibility("hidden"))) PyObject *format_totmaps(PyObject *module, PyObject *fields);

/* The text so far: a stack block, moved to the heap when it outgrows it
   (a totmaps is ~25 lines of ~28 bytes). Every write goes through put(). */
typedef struct {
    char *data;
    Py_ssize_t len, cap;
    char small[2048];
} text_t;

static int
put(text_t *t, const char *bytes, Py_ssize_t n)
{
    if (n > t->cap - t->len) {
        if (t->len > PY_SSIZE_T_MAX / 2 || n > PY_SSIZE_T_MAX / 2 - t->len) {
            PyErr_NoMemory();
            return -1;
        }
        Py_ssize_t cap = (t->len + n) * 2;
        char *p = t->data == t->small ? PyMem_Malloc((size_t)cap) : PyMem_Realloc(t->data, (size_t)cap);
        if (p == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        if (t->data == t->small)
            memcpy(p, t->small, (size_t)t->len);
        t->data = p;
        t->cap = cap;
    }
    memcpy(t->data + t->len, bytes, (size_t)n);
    t->len += n;
    return 0;
}

static const char SPACES[] = "                "; /* 16 */

/* "%-16s%8llu kB\n" % (name + ":", v) for an ASCII name, every byte counted. */
static int
put_line(text_t *t, const char *name, Py_ssize_t n, unsigned long long v)
{
    char digits[24];
    int d = snprintf(digits, sizeof digits, "%llu", v); /* at most 20 digits */
    if (put(t, name, n) < 0 || put(t, ":", 1) < 0)
        return -1;
    if (n + 1 < 16 && put(t, SPACES, 16 - (n + 1)) < 0)
        return -1;
    if (d < 8 && put(t, SPACES, 8 - d) < 0)
        return -1;
    return put(t, digits, d) < 0 ? -1 : put(t, " kB\n", 4);
}

/* `name, value = item`: two new references, or -1 with Python's exception classes. */
static int
unpack2(PyObject *item, PyObject **a, PyObject **b)
{
    if (PyTuple_CheckExact(item) && PyTuple_GET_SIZE(item) == 2) {
        *a = Py_NewRef(PyTuple_GET_ITEM(item, 0));
        *b = Py_NewRef(PyTuple_GET_ITEM(item, 1));
        return 0;
    }
    PyObject *it = PyObject_GetIter(item);
    if (it == NULL)
        return -1;
    *a = PyIter_Next(it);
    *b = *a ? PyIter_Next(it) : NULL;
    PyObject *extra = *b ? PyIter_Next(it) : NULL;
    Py_DECREF(it);
    if (extra != NULL || (*b == NULL && !PyErr_Occurred()))
        PyErr_SetString(PyExc_ValueError, extra ? "too many values to unpack (expected 2)"
                                                : "not enough values to unpack (expected 2)");
    Py_XDECREF(extra);
    if (PyErr_Occurred()) {
        Py_CLEAR(*a);
        Py_CLEAR(*b);
        return -1;
    }
    return 0;
}

/* The reference's ValueError; f"{name}: {value} ..." formats the name first. */
static void
out_of_range(PyObject *name, PyObject *number)
{
    PyObject *n = PyObject_Format(name, NULL);
    PyObject *v = n ? PyObject_Format(number, NULL) : NULL;
    if (v != NULL)
        PyErr_Format(PyExc_ValueError, "%U: %U kB is outside 0..2**64-1", n, v);
    Py_XDECREF(n);
    Py_XDECREF(v);
}

/* The line of a name the fast path does not take, the reference's way: name +
   ":" (TypeError for a non-str; whatever a str subclass's __add__ makes), then
   LINE_FORMAT % (label, number). A new str, or NULL with an exception set. */
static PyObject *
slow_line(PyObject *name, PyObject *number)
{
    PyObject *colon = PyUnicode_FromStringAndSize(":", 1);
    PyObject *label = colon ? PyNumber_Add(name, colon) : NULL;
    PyObject *format = label ? PyUnicode_FromString("%-16s%8lu kB\n") : NULL;
    PyObject *args = format ? PyTuple_Pack(2, label, number) : NULL;
    PyObject *line = args ? PyUnicode_Format(format, args) : NULL;
    Py_XDECREF(colon);
    Py_XDECREF(label);
    Py_XDECREF(format);
    Py_XDECREF(args);
    return line;
}

/* One item, as the reference's loop body, checks in its order (the value, its
   range, then the name): 0, or -1 with an exception set. The first line that
   is not ASCII is kept in *not_ascii: the reference encodes only at the end. */
static int
format_item(text_t *t, PyObject *name, PyObject *value, PyObject **not_ascii)
{
    PyObject *number = PyNumber_Index(value); /* operator.index: may run any Python code */
    if (number == NULL)
        return -1;
    /* OverflowError for a negative value too: both are outside the range. */
    unsigned long long v = PyLong_AsUnsignedLongLong(number);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        out_of_range(name, number);
        Py_DECREF(number);
        return -1;
    }
    int rc;
#if PY_VERSION_HEX < 0x030C0000
    /* A legacy (wchar_t) str made by an old C API has no data to read until it is readied. */
    if (PyUnicode_Check(name) && PyUnicode_READY(name) < 0) {
        Py_DECREF(number);
        return -1;
    }
#endif
    if (PyUnicode_CheckExact(name) && PyUnicode_IS_ASCII(name)) {
        /* The common case, at C speed: an ASCII str's data is its bytes. */
        rc = put_line(t, (const char *)PyUnicode_DATA(name), PyUnicode_GET_LENGTH(name), v);
    } else {
        PyObject *line = slow_line(name, number);
        rc = line == NULL ? -1 : 0;
        if (line != NULL && PyUnicode_IS_ASCII(line))
            rc = put(t, (const char *)PyUnicode_DATA(line), PyUnicode_GET_LENGTH(line));
        else if (line != NULL && *not_ascii == NULL)
            *not_ascii = Py_NewRef(line);
        Py_XDECREF(line);
    }
    Py_DECREF(number);
    return rc;
}

/*
 * format_totmaps: _format.format_totmaps in C, the same text, the same
 * exception classes in the same order: it walks fields.items() with the
 * iterator protocol, as the reference's for loop does, holding its own
 * reference to every name and value. So a value's __index__ that changes the
 * dict makes the iterator raise RuntimeError, as it does in the reference, and
 * nothing borrowed outlives Python code. A cold read formats every answer it
 * computes: in Python that took longer than parsing it.
 */
PyObject *
format_totmaps(PyObject *module, PyObject *fields)
{
    (void)module;
    /* Interned once: a name made afresh each call sits at a new address each
       time, and CPython's type attribute cache keeps a reference to every one
       (up to its size): memory that looks leaked under ASan's allocator. */
    static PyObject *items_name;
    if (items_name == NULL && (items_name = PyUnicode_InternFromString("items")) == NULL)
        return NULL;
    PyObject *items = PyObject_CallMethodNoArgs(fields, items_name);
    if (items == NULL)
        return NULL;
    PyObject *it = PyObject_GetIter(items);
    Py_DECREF(items);
    if (it == NULL)
        return NULL;
    text_t t;
    t.data = t.small;
    t.len = 0;
    t.cap = sizeof t.small;
    PyObject *item, *not_ascii = NULL, *result = NULL;
    while ((item = PyIter_Next(it)) != NULL) {
        PyObject *name, *value;
        int rc = unpack2(item, &name, &value);
        Py_DECREF(item);
        if (rc == 0) {
            rc = format_item(&t, name, value, &not_ascii);
            Py_DECREF(name);
            Py_DECREF(value);
        }
        if (rc < 0)
            goto done;
    }
    if (PyErr_Occurred())
        goto done;
    if (not_ascii != NULL) /* UnicodeEncodeError, as the reference's final encode("ascii") */
        Py_XDECREF(PyUnicode_AsASCIIString(not_ascii));
    else
        result = PyBytes_FromStringAndSize(t.data, t.len);
done:
    Py_DECREF(it);
    Py_XDECREF(not_ascii);
    if (t.data != t.small)
        PyMem_Free(t.data);
    return result;
}
