/*
 * totmapsfs.proc._speedups: the C half of the proc reader.
 *
 * Two small files of every process are read on the hot path, /proc/<pid>/stat
 * and /proc/<pid>/status: for a cache hit they are all the work there is
 * (engine/_engine.py), and a whole-system view reads them for every process.
 * Parsing them in Python costs more than the kernel takes to print them
 * (measured: 15 us of parse against 9 us of reads for both), so this module
 * reads them with the GIL released and parses them in one pass.
 *
 *   read_at(dirfd, name[, wait]) -> bytes   openat + read to EOF + close, OSError on failure
 *   parse_stat(data) -> tuple          the fields of proc/_text.py's Stat
 *   parse_status(data) -> tuple        the fields of proc/_text.py's Status
 *   probe(dirfd) -> (stat, status)     both files of one process, read and parsed
 *   caller(rootfd, tid) -> tuple       a request's thread: its status and its user namespace
 *   probe_many                         the same for many processes at once (whole-system views)
 *
 * The rules are proc/_text.py's parse_stat and parse_status (the reference);
 * this module must give the same values and raise the same exception class on
 * every input, which tests/unit/test_proc_text.py checks on live and generated
 * text. Numbers go through PyLong_FromString, which is what int() does with
 * bytes, so that signs, underscores and surrounding blanks are read alike.
 * Files are opened O_NONBLOCK: /proc ignores it, and a FIFO planted in a
 * --proc root for the tests then fails at once instead of blocking whoever
 * reads it (the daemon reads these on its event loop).
 */
#include "_proc.h"

void
file_free(file_t *f)
{
    if (f->data != f->small)
        free(f->data);
}

/* Read dirfd/name to EOF into f. 0, or -1 with errno set. No GIL needed. */
int
slurp_flags(int dirfd, const char *name, file_t *f, int flags)
{
    size_t cap = SMALL;
    f->data = f->small;
    f->len = 0;
    int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | flags);
    if (fd < 0)
        return -1;
    for (;;) {
        if (f->len == cap) {
            /* The caller makes a bytes of it: its size must fit a Py_ssize_t. */
            size_t bigger = cap <= PY_SSIZE_T_MAX / 2 ? cap * 2 : 0;
            char *p = bigger == 0 ? NULL : f->data == f->small ? malloc(bigger) : realloc(f->data, bigger);
            if (p == NULL) {
                /* Not errno: an earlier call (a read that hit EINTR) may have left it set. */
                int saved = bigger == 0 ? EFBIG : ENOMEM;
                file_free(f);
                close(fd);
                errno = saved;
                return -1;
            }
            if (f->data == f->small)
                memcpy(p, f->small, f->len);
            f->data = p;
            cap = bigger;
        }
        ssize_t got = read(fd, f->data + f->len, cap - f->len);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            int saved = errno;
            file_free(f);
            close(fd);
            errno = saved;
            return -1;
        }
        if (got == 0)
            break;
        f->len += (size_t)got;
    }
    close(fd);
    return 0;
}

int
slurp(int dirfd, const char *name, file_t *f)
{
    return slurp_flags(dirfd, name, f, O_NONBLOCK);
}

/* OSError(err, strerror(err), name). err is passed in, saved by the caller
   right after the failing call: errno itself does not survive the decoding of
   the name (an allocation) nor whatever ran in between. */
PyObject *
oserror(int err, const char *name)
{
    PyObject *filename = PyUnicode_DecodeFSDefault(name);
    if (filename == NULL)
        return NULL;
    errno = err;
    PyObject *result = PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, filename);
    Py_DECREF(filename);
    return result;
}

/* --- the module's functions ---------------------------------------------------- */

static int
buffer_of(PyObject *obj, Py_buffer *view)
{
    return PyObject_GetBuffer(obj, view, PyBUF_SIMPLE);
}

/* fields(the bytes of data): parse_stat and parse_status. */
static PyObject *
parse_with(PyObject *data, PyObject *(*fields)(const char *, size_t))
{
    Py_buffer view;
    if (buffer_of(data, &view) < 0)
        return NULL;
    PyObject *result = fields(view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    return result;
}

static PyObject *
parse_stat(PyObject *module, PyObject *data)
{
    (void)module;
    return parse_with(data, stat_fields);
}

static PyObject *
parse_status(PyObject *module, PyObject *data)
{
    (void)module;
    return parse_with(data, status_fields);
}

static PyObject *
read_at(PyObject *module, PyObject *args)
{
    (void)module;
    int dirfd, wait = 0;
    PyObject *name_obj;
    if (!PyArg_ParseTuple(args, "iO&|p:read_at", &dirfd, PyUnicode_FSConverter, &name_obj, &wait))
        return NULL;
    const char *name = PyBytes_AS_STRING(name_obj);
    file_t f;
    int rc, err = 0;
    Py_BEGIN_ALLOW_THREADS
    rc = slurp_flags(dirfd, name, &f, wait ? 0 : O_NONBLOCK);
    if (rc < 0)
        err = errno;
    Py_END_ALLOW_THREADS
    PyObject *result = rc < 0 ? oserror(err, name) : PyBytes_FromStringAndSize(f.data, (Py_ssize_t)f.len);
    if (rc == 0)
        file_free(&f);
    Py_DECREF(name_obj);
    return result;
}

static PyObject *
probe(PyObject *module, PyObject *arg)
{
    (void)module;
    long fd = PyLong_AsLong(arg);
    if (fd == -1 && PyErr_Occurred())
        return NULL;
    if (fd < INT_MIN || fd > INT_MAX)
        return PyErr_Format(PyExc_OverflowError, "not a file descriptor: %ld", fd);
    int dirfd = (int)fd;
    file_t status, stat;
    int rc_status, rc_stat = -1, err = 0;
    /* status first: the engine learns from it whether there is an address space. */
    Py_BEGIN_ALLOW_THREADS
    rc_status = slurp(dirfd, "status", &status);
    if (rc_status < 0)
        err = errno;
    else if ((rc_stat = slurp(dirfd, "stat", &stat)) < 0)
        err = errno;
    Py_END_ALLOW_THREADS
    if (rc_status < 0)
        return oserror(err, "status");
    if (rc_stat < 0) {
        file_free(&status);
        return oserror(err, "stat");
    }
    PyObject *st = stat_fields(stat.data, stat.len);
    PyObject *ss = st ? status_fields(status.data, status.len) : NULL;
    file_free(&status);
    file_free(&stat);
    PyObject *result = ss ? PyTuple_Pack(2, st, ss) : NULL;
    Py_XDECREF(st);
    Py_XDECREF(ss);
    return result;
}

static PyObject *
ns_inode(int rootfd, const char *path)
{
    struct stat st;
    int rc, err;
    Py_BEGIN_ALLOW_THREADS
    rc = fstatat(rootfd, path, &st, 0);
    err = errno;
    Py_END_ALLOW_THREADS
    if (rc < 0 && (err == ENOENT || err == ESRCH || err == ENOTDIR))
        Py_RETURN_NONE; /* gone, as _io.GONE says: the reference says None too */
    if (rc < 0) {
        errno = err;
        return PyErr_SetFromErrnoWithFilename(PyExc_OSError, path); /* EMFILE, EACCES...: not "gone" */
    }
    return PyLong_FromUnsignedLongLong((unsigned long long)st.st_ino);
}

static PyObject *
caller(PyObject *module, PyObject *args)
{
    (void)module;
    int rootfd;
    long tid;
    if (!PyArg_ParseTuple(args, "il:caller", &rootfd, &tid))
        return NULL;
    char path[64];
    snprintf(path, sizeof path, "%ld/status", tid);
    file_t status;
    int rc, err = 0;
    Py_BEGIN_ALLOW_THREADS
    rc = slurp(rootfd, path, &status);
    if (rc < 0)
        err = errno;
    Py_END_ALLOW_THREADS
    if (rc < 0)
        return oserror(err, path);
    PyObject *fields = status_fields(status.data, status.len);
    file_free(&status);
    if (fields == NULL)
        return NULL;
    /* The pid namespace is not stat'ed: NSpid in the status says whether the
       caller's is ours (one entry) or below it (more). */
    snprintf(path, sizeof path, "%ld/ns/user", tid);
    PyObject *user_ns = ns_inode(rootfd, path);
    PyObject *result = user_ns ? PyTuple_Pack(2, fields, user_ns) : NULL;
    Py_DECREF(fields);
    Py_XDECREF(user_ns);
    return result;
}

static PyMethodDef methods[] = {
    {"read_at", read_at, METH_VARARGS,
     "read_at(dirfd, name, wait=False, /)\n--\n\nThe whole of file ``name`` relative to ``dirfd``, as bytes; OSError "
     "on failure. Opened O_NONBLOCK unless ``wait``."},
    {"parse_stat", parse_stat, METH_O,
     "parse_stat(data, /)\n--\n\nThe Stat fields of /proc/<pid>/stat text, as a tuple (see proc/_text.py)."},
    {"parse_status", parse_status, METH_O,
     "parse_status(data, /)\n--\n\nThe Status fields of /proc/<pid>/status text, as a tuple (see proc/_text.py)."},
    {"caller", caller, METH_VARARGS,
     "caller(rootfd, tid, /)\n--\n\n(status fields, user ns inode) of thread ``tid`` of the procfs at ``rootfd``; "
     "the inode is None when it cannot be told."},
    {"probe_many", probe_many, METH_VARARGS,
     "probe_many(rootfd, pids, cgroup=False, /)\n--\n\nFor each pid, (dirfd, stat fields, status fields, cgroup text "
     "or None), an errno int, or the exception its text raised; the reads done with the GIL released once."},
    {"probe", probe, METH_O,
     "probe(dirfd, /)\n--\n\n(stat fields, status fields) of the process whose /proc directory is ``dirfd``."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "totmapsfs.proc._speedups",
    .m_doc = "The C half of the proc reader: /proc/<pid>/stat and status read and parsed.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModule_Create(&module_def);
}
