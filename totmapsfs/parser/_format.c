/*
 * totmapsfs.parser._speedups, the format half: format_totmaps. The parse half
 * and the module are in _speedups.c.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdio.h>
#include <string.h>

__attribute__((visibility("hidden"))) PyObject *format_totmaps(PyObject *module, PyObject *fields);

/*
 * format_totmaps: _format.format_totmaps in C, the same text and the same
 * exception classes: per item, TypeError for a name that is not a str or a
 * value that is not an integer (operator.index), ValueError for a value
 * outside 0..2**64-1; then UnicodeEncodeError for a name that is not ASCII.
 * A cold read formats every answer it computes: in Python that took longer
 * than parsing it.
 */
PyObject *
format_totmaps(PyObject *module, PyObject *fields)
{
    (void)module;
    if (!PyDict_Check(fields)) { /* any other mapping, as the reference takes: its items, in its order */
        PyObject *copy = PyObject_CallOneArg((PyObject *)&PyDict_Type, fields);
        if (copy == NULL)
            return NULL;
        PyObject *result = format_totmaps(module, copy);
        Py_DECREF(copy);
        return result;
    }
    /* One pass checking the items in order, as the reference meets them. */
    Py_ssize_t pos = 0, size = 0;
    PyObject *name, *value, *not_ascii = NULL;
    while (PyDict_Next(fields, &pos, &name, &value)) {
        if (!PyUnicode_Check(name))
            return PyErr_Format(PyExc_TypeError, "can only concatenate str (not \"%.100s\") to str",
                                Py_TYPE(name)->tp_name);
        PyObject *number = PyNumber_Index(value);
        if (number == NULL)
            return NULL;
        /* OverflowError for a negative value too: both are outside the range. */
        unsigned long long v = PyLong_AsUnsignedLongLong(number);
        if (v == (unsigned long long)-1 && PyErr_Occurred()) {
            PyErr_Clear();
            PyErr_Format(PyExc_ValueError, "%U: %S kB is outside 0..2**64-1", name, number);
            Py_DECREF(number);
            return NULL;
        }
        Py_DECREF(number);
        if (!PyUnicode_IS_ASCII(name)) {
            if (not_ascii == NULL)
                not_ascii = name;
            continue;
        }
        /* "%-16s%8lu kB\n": the label padded to 16, the value to 8, " kB\n". */
        Py_ssize_t label = PyUnicode_GET_LENGTH(name) + 1;
        size += (label > 16 ? label : 16) + 20 + 4;
    }
    if (not_ascii != NULL) /* the reference encodes the whole text to ASCII at the end */
        return PyUnicode_AsASCIIString(not_ascii);
    PyObject *out = PyBytes_FromStringAndSize(NULL, size);
    if (out == NULL)
        return NULL;
    char *p = PyBytes_AS_STRING(out);
    pos = 0;
    while (PyDict_Next(fields, &pos, &name, &value)) {
        char label[80];
        Py_ssize_t n;
        const char *text = PyUnicode_AsUTF8AndSize(name, &n); /* ASCII: its bytes */
        if (text == NULL || n > (Py_ssize_t)sizeof label - 2) {
            /* A name too long for the stack: there is no such kernel field; say it the slow way. */
            if (text != NULL)
                PyErr_SetString(PyExc_ValueError, "field name longer than 78 characters");
            Py_DECREF(out);
            return NULL;
        }
        memcpy(label, text, (size_t)n);
        label[n] = ':';
        label[n + 1] = '\0';
        unsigned long long v = PyLong_AsUnsignedLongLong(value);
        if (v == (unsigned long long)-1 && PyErr_Occurred()) { /* an index-able non-int: take it again */
            PyErr_Clear();
            PyObject *number = PyNumber_Index(value);
            v = number ? PyLong_AsUnsignedLongLong(number) : 0;
            Py_XDECREF(number);
            if (PyErr_Occurred()) {
                Py_DECREF(out);
                return NULL;
            }
        }
        p += sprintf(p, "%-16s%8llu kB\n", label, v);
    }
    if (_PyBytes_Resize(&out, p - PyBytes_AS_STRING(out)) < 0)
        return NULL;
    return out;
}
