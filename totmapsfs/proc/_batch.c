/*
 * totmapsfs.proc._speedups, the batch half: probe_many.
 */
#include "_proc.h"

/* --- batches: one GIL release for many processes ------------------------------
 *
 * A whole-system view reads a few small files of every process. Done one
 * call a file, each call releases and retakes the GIL, and the view's
 * threads spend their time handing it to each other (measured: two threads
 * were slower than one). Done as a batch, the GIL is released once for all
 * the reads of up to a chunk of processes, and the threads really read in
 * parallel.
 */

typedef struct {
    int dirfd;
    int err; /* errno of the first failure, 0 if none */
    file_t status, stat, cgroup;
    int have_status, have_stat, have_cgroup;
} scan_t;

static PyObject *
exception_now(void)
{
    /* The pending exception as an object, the error indicator cleared. */
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL && value != NULL)
        PyException_SetTraceback(value, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return value;
}

PyObject *
probe_many(PyObject *module, PyObject *args)
{
    (void)module;
    int rootfd, with_cgroup = 0;
    PyObject *pids_obj;
    if (!PyArg_ParseTuple(args, "iO|p:probe_many", &rootfd, &pids_obj, &with_cgroup))
        return NULL;
    /* A tuple, never the caller's list itself: a pid's __index__ (run by
       PyLong_AsLong) may empty that list while we walk it. The tuple holds
       its own reference to every item and cannot change size. */
    PyObject *seq = PySequence_Tuple(pids_obj);
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(seq);
    long *pids = PyMem_Calloc((size_t)n + 1, sizeof *pids);
    scan_t *scans = PyMem_Calloc((size_t)n + 1, sizeof *scans);
    PyObject *result = NULL;
    if (pids == NULL || scans == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++)
        scans[i].dirfd = -1; /* no fd yet: 0 is a descriptor like any other */
    for (Py_ssize_t i = 0; i < n; i++) {
        pids[i] = PyLong_AsLong(PyTuple_GET_ITEM(seq, i));
        if (pids[i] == -1 && PyErr_Occurred())
            goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        scan_t *sc = &scans[i];
        char name[32];
        snprintf(name, sizeof name, "%ld", pids[i]);
        sc->dirfd = openat(rootfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (sc->dirfd < 0) {
            sc->err = errno;
            continue;
        }
        /* status first, as probe(): whether there is an mm */
        if (slurp(sc->dirfd, "status", &sc->status) == 0)
            sc->have_status = 1;
        else
            sc->err = errno;
        if (!sc->err && slurp(sc->dirfd, "stat", &sc->stat) == 0)
            sc->have_stat = 1;
        else if (!sc->err)
            sc->err = errno;
        if (!sc->err && with_cgroup && slurp(sc->dirfd, "cgroup", &sc->cgroup) == 0)
            sc->have_cgroup = 1;
        else if (!sc->err && with_cgroup)
            sc->err = errno;
        if (sc->err) {
            close(sc->dirfd);
            sc->dirfd = -1;
        }
    }
    Py_END_ALLOW_THREADS
    result = PyList_New(n);
    if (result == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        scan_t *sc = &scans[i];
        PyObject *item;
        if (sc->err) {
            item = PyLong_FromLong(sc->err);
        } else {
            PyObject *st = stat_fields(sc->stat.data, sc->stat.len);
            PyObject *ss = st ? status_fields(sc->status.data, sc->status.len) : NULL;
            PyObject *cg = NULL;
            if (ss != NULL)
                cg = with_cgroup ? PyBytes_FromStringAndSize(sc->cgroup.data, (Py_ssize_t)sc->cgroup.len)
                                 : Py_NewRef(Py_None);
            PyObject *fd = cg ? PyLong_FromLong(sc->dirfd) : NULL;
            item = fd ? PyTuple_New(4) : NULL;
            if (item != NULL) {
                PyTuple_SET_ITEM(item, 0, fd);
                PyTuple_SET_ITEM(item, 1, st);
                PyTuple_SET_ITEM(item, 2, ss);
                PyTuple_SET_ITEM(item, 3, cg);
            } else {
                Py_XDECREF(fd);
                Py_XDECREF(st);
                Py_XDECREF(ss);
                Py_XDECREF(cg);
                if (PyErr_ExceptionMatches(PyExc_MemoryError)) {
                    Py_CLEAR(result);
                    goto done;
                }
                close(sc->dirfd);
                sc->dirfd = -1;
                item = exception_now(); /* a text we cannot parse: the caller raises it */
            }
        }
        if (item == NULL) {
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, i, item);
    }
done:
    if (scans != NULL) {
        for (Py_ssize_t i = 0; i < n; i++) {
            if (scans[i].dirfd >= 0 && result == NULL) /* else the caller owns it */
                close(scans[i].dirfd);
            if (scans[i].have_status)
                file_free(&scans[i].status);
            if (scans[i].have_stat)
                file_free(&scans[i].stat);
            if (scans[i].have_cgroup)
                file_free(&scans[i].cgroup);
        }
    }
    PyMem_Free(scans);
    PyMem_Free(pids);
    Py_DECREF(seq);
    return result;
}
