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
 *   probe_many, read_many              the same for many processes at once (whole-system views)
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

static void
file_free(file_t *f)
{
    if (f->data != f->small)
        free(f->data);
}

/* Read dirfd/name to EOF into f. 0, or -1 with errno set. No GIL needed. */
static int
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
            size_t bigger = cap * 2;
            char *p = f->data == f->small ? malloc(bigger) : realloc(f->data, bigger);
            if (p == NULL) {
                int saved = errno ? errno : ENOMEM;
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

static int
slurp(int dirfd, const char *name, file_t *f)
{
    return slurp_flags(dirfd, name, f, O_NONBLOCK);
}

static PyObject *
oserror(const char *name)
{
    PyObject *filename = PyUnicode_DecodeFSDefault(name);
    PyObject *result = PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, filename);
    Py_XDECREF(filename);
    return result;
}

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

/* The tuple of int(x, base) for x in field.split(). */
static PyObject *
to_ints(const char *p, size_t len, int base)
{
    PyObject *list = PyList_New(0);
    if (list == NULL)
        return NULL;
    size_t i = 0;
    while (i < len) {
        while (i < len && is_blank((unsigned char)p[i]))
            i++;
        size_t start = i;
        while (i < len && !is_blank((unsigned char)p[i]))
            i++;
        if (i > start) {
            PyObject *n = to_int(p + start, i - start, base);
            if (n == NULL || PyList_Append(list, n) < 0) {
                Py_XDECREF(n);
                Py_DECREF(list);
                return NULL;
            }
            Py_DECREF(n);
        }
    }
    PyObject *tuple = PyList_AsTuple(list);
    Py_DECREF(list);
    return tuple;
}

/* --- stat ------------------------------------------------------------------ */

static PyObject *
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
    size_t i = from;
    while (i < len && n < 20) {
        while (i < len && is_blank((unsigned char)data[i]))
            i++;
        size_t start = i;
        while (i < len && !is_blank((unsigned char)data[i]))
            i++;
        if (i > start) {
            tok[n] = data + start;
            toklen[n] = i - start;
            n++;
        }
    }
    if (n < 20) {
        /* Count them all, for the same message as the reference. */
        int total = n;
        while (i < len) {
            while (i < len && is_blank((unsigned char)data[i]))
                i++;
            size_t start = i;
            while (i < len && !is_blank((unsigned char)data[i]))
                i++;
            total += i > start;
        }
        return PyErr_Format(PyExc_ValueError, "stat: %d fields after the command name, 20 wanted", total);
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

static PyObject *
status_fields(const char *data, size_t len)
{
    const char *val[NKEYS];
    size_t vlen[NKEYS];
    int found[NKEYS] = {0};
    /* The memory counters block: from the "\n" before "VmSize:" to the "\n"
       before "CoreDumping:" (or the end). */
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
            if (vm == NULL && linelen >= 7 && memcmp(line, "VmSize:", 7) == 0)
                vm = line - 1;
            else if (vm != NULL && vm_end == NULL && linelen >= 12 && memcmp(line, "CoreDumping:", 12) == 0)
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
        if (vm == NULL)
            mm = PyBytes_FromStringAndSize("", 0);
        else
            mm = PyBytes_FromStringAndSize(vm, (vm_end ? vm_end : data + len) - vm);
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

/* --- the module's functions ---------------------------------------------------- */

static int
buffer_of(PyObject *obj, Py_buffer *view)
{
    return PyObject_GetBuffer(obj, view, PyBUF_SIMPLE);
}

static PyObject *
parse_stat(PyObject *module, PyObject *data)
{
    (void)module;
    Py_buffer view;
    if (buffer_of(data, &view) < 0)
        return NULL;
    PyObject *result = stat_fields(view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    return result;
}

static PyObject *
parse_status(PyObject *module, PyObject *data)
{
    (void)module;
    Py_buffer view;
    if (buffer_of(data, &view) < 0)
        return NULL;
    PyObject *result = status_fields(view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    return result;
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
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = slurp_flags(dirfd, name, &f, wait ? 0 : O_NONBLOCK);
    Py_END_ALLOW_THREADS
    PyObject *result = rc < 0 ? oserror(name) : PyBytes_FromStringAndSize(f.data, (Py_ssize_t)f.len);
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
    int rc_status, rc_stat = -1, saved = 0;
    /* status first: the engine learns from it whether there is an address space. */
    Py_BEGIN_ALLOW_THREADS
    rc_status = slurp(dirfd, "status", &status);
    if (rc_status == 0) {
        rc_stat = slurp(dirfd, "stat", &stat);
        saved = errno;
    }
    Py_END_ALLOW_THREADS
    if (rc_status < 0)
        return oserror("status");
    if (rc_stat < 0) {
        file_free(&status);
        errno = saved;
        return oserror("stat");
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
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = fstatat(rootfd, path, &st, 0);
    Py_END_ALLOW_THREADS
    if (rc < 0)
        Py_RETURN_NONE; /* the reference says None too: it cannot be told */
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
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = slurp(rootfd, path, &status);
    Py_END_ALLOW_THREADS
    if (rc < 0)
        return oserror(path);
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

static PyObject *
probe_many(PyObject *module, PyObject *args)
{
    (void)module;
    int rootfd, with_cgroup = 0;
    PyObject *pids_obj;
    if (!PyArg_ParseTuple(args, "iO|p:probe_many", &rootfd, &pids_obj, &with_cgroup))
        return NULL;
    PyObject *seq = PySequence_Fast(pids_obj, "probe_many() takes a sequence of pids");
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    long *pids = PyMem_Calloc((size_t)n + 1, sizeof *pids);
    scan_t *scans = PyMem_Calloc((size_t)n + 1, sizeof *scans);
    PyObject *result = NULL;
    if (pids == NULL || scans == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        pids[i] = PyLong_AsLong(PySequence_Fast_GET_ITEM(seq, i));
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
            if (scans[i].dirfd > 0 && result == NULL) /* else the caller owns it */
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

static PyObject *
read_many(PyObject *module, PyObject *args)
{
    (void)module;
    PyObject *fds_obj, *name_obj;
    int wait = 0;
    if (!PyArg_ParseTuple(args, "OO&|p:read_many", &fds_obj, PyUnicode_FSConverter, &name_obj, &wait))
        return NULL;
    PyObject *seq = PySequence_Fast(fds_obj, "read_many() takes a sequence of directory fds");
    if (seq == NULL) {
        Py_DECREF(name_obj);
        return NULL;
    }
    const char *name = PyBytes_AS_STRING(name_obj);
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    int *fds = PyMem_Calloc((size_t)n + 1, sizeof *fds);
    int *errs = PyMem_Calloc((size_t)n + 1, sizeof *errs);
    file_t *files = PyMem_Calloc((size_t)n + 1, sizeof *files);
    PyObject *result = NULL;
    if (fds == NULL || errs == NULL || files == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        long fd = PyLong_AsLong(PySequence_Fast_GET_ITEM(seq, i));
        if (fd == -1 && PyErr_Occurred())
            goto done;
        fds[i] = (int)fd;
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++)
        errs[i] = slurp_flags(fds[i], name, &files[i], wait ? 0 : O_NONBLOCK) < 0 ? errno : 0;
    Py_END_ALLOW_THREADS
    result = PyList_New(n);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (result != NULL) {
            PyObject *item = errs[i] ? PyLong_FromLong(errs[i])
                                     : PyBytes_FromStringAndSize(files[i].data, (Py_ssize_t)files[i].len);
            if (item == NULL)
                Py_CLEAR(result);
            else
                PyList_SET_ITEM(result, i, item);
        }
        if (!errs[i])
            file_free(&files[i]);
    }
done:
    PyMem_Free(fds);
    PyMem_Free(errs);
    PyMem_Free(files);
    Py_DECREF(seq);
    Py_DECREF(name_obj);
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
    {"read_many", read_many, METH_VARARGS,
     "read_many(dirfds, name, wait=False, /)\n--\n\nFile ``name`` under each directory fd: bytes, or an errno int; "
     "the reads done with the GIL released once."},
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
