/* Columns into binary COPY rows, compiled: the writer's twin of _bindecode.c.

   encode(n, columns) returns the rows of a binary COPY stream (no header, no trailer) for n
   rows whose fields the caller encoded column by column (pgmonkey/frames/_binary.py):

     columns: one (lengths, data, starts, width) per column
       lengths  int32[n]: the field's byte length, -1 for NULL
       data     bytes of the column's values, already in PostgreSQL's binary form
       starts   None for a fixed-width column: row i's value is data[i * width : ...];
                else int64[n]: where row i's value starts in data (ignored for NULL)
       width    the fixed width (every non-NULL length must be it), 0 for variable

   Each row is its field count (int16), then per field its length (int32) and its bytes, all
   big-endian: one pass of memcpy, with the GIL released. Every length and start is checked
   against the buffers first (a bad one is a ValueError), and again as it is copied (another
   thread may change the caller's arrays meanwhile): never a read or a write out of bounds. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* Rows are counted in Py_ssize_t; each needs at least 2 bytes, each field 4 more: beyond
   this many rows the sizes below could wrap around. */
#define MAX_ROWS (PY_SSIZE_T_MAX / 16)

typedef struct {
    Py_buffer lengths;
    Py_buffer data;
    Py_buffer starts; /* .obj NULL for a fixed-width column */
    Py_ssize_t width;
} Field;

static void release(Field *cols, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        if (cols[i].lengths.obj)
            PyBuffer_Release(&cols[i].lengths);
        if (cols[i].data.obj)
            PyBuffer_Release(&cols[i].data);
        if (cols[i].starts.obj)
            PyBuffer_Release(&cols[i].starts);
    }
    PyMem_Free(cols);
}

static inline void put16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
}

static inline void put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* The bytes the rows take, after checking every column against its buffers; -1 and an
   exception set when a length, a start or a buffer's size is wrong. */
static Py_ssize_t checked_size(Field *cols, Py_ssize_t ncols, Py_ssize_t n)
{
    Py_ssize_t total = 2 * n;
    for (Py_ssize_t c = 0; c < ncols; c++) {
        Field *f = &cols[c];
        const int32_t *len = f->lengths.buf;
        if (f->lengths.len / (Py_ssize_t)sizeof(int32_t) != n ||
            f->lengths.len % (Py_ssize_t)sizeof(int32_t)) {
            PyErr_Format(PyExc_ValueError, "column %zd: lengths for %zd rows expected", c, n);
            return -1;
        }
        if (!f->starts.obj && n && f->data.len / f->width < n) {
            PyErr_Format(PyExc_ValueError, "column %zd: data shorter than %zd values", c, n);
            return -1;
        }
        if (f->starts.obj && (f->starts.len / (Py_ssize_t)sizeof(int64_t) != n ||
                              f->starts.len % (Py_ssize_t)sizeof(int64_t))) {
            PyErr_Format(PyExc_ValueError, "column %zd: starts for %zd rows expected", c, n);
            return -1;
        }
        const int64_t *start = f->starts.obj ? f->starts.buf : NULL;
        for (Py_ssize_t i = 0; i < n; i++) {
            int32_t l = len[i];
            total += 4;
            if (l < 0) {
                if (l != -1)
                    goto bad;
                continue;
            }
            if (start ? (start[i] < 0 || start[i] > f->data.len - l) : l != f->width)
                goto bad;
            if (total > PY_SSIZE_T_MAX - l) { /* beyond what a Py_ssize_t counts */
                PyErr_NoMemory();
                return -1;
            }
            total += l;
            continue;
        bad:
            PyErr_Format(PyExc_ValueError, "column %zd, row %zd: length %d does not fit", c, i,
                         (int)l);
            return -1;
        }
    }
    return total;
}

static PyObject *encode(PyObject *module, PyObject *args)
{
    Py_ssize_t n;
    PyObject *list;
    if (!PyArg_ParseTuple(args, "nO!", &n, &PyList_Type, &list))
        return NULL;
    /* A tuple of the list's items: converting an item runs Python code (a width's
       __index__), which could change the list under borrowed references. */
    PyObject *items = PySequence_Tuple(list);
    if (!items)
        return NULL;
    Py_ssize_t ncols = PyTuple_GET_SIZE(items);
    if (n < 0 || n > MAX_ROWS || ncols > 0x7FFF) {
        Py_DECREF(items);
        PyErr_SetString(PyExc_ValueError, "bad row or column count");
        return NULL;
    }
    Field *cols = PyMem_Calloc(ncols ? ncols : 1, sizeof(Field));
    if (!cols) {
        Py_DECREF(items);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t c = 0; c < ncols; c++) {
        PyObject *item = PyTuple_GET_ITEM(items, c);
        PyObject *lengths, *data, *starts;
        Py_ssize_t width;
        if (!PyArg_ParseTuple(item, "OOOn", &lengths, &data, &starts, &width))
            goto fail;
        if (PyObject_GetBuffer(lengths, &cols[c].lengths, PyBUF_C_CONTIGUOUS) < 0 ||
            PyObject_GetBuffer(data, &cols[c].data, PyBUF_C_CONTIGUOUS) < 0)
            goto fail;
        if (starts != Py_None &&
            PyObject_GetBuffer(starts, &cols[c].starts, PyBUF_C_CONTIGUOUS) < 0)
            goto fail;
        if (width < 0 || width > INT32_MAX || (starts == Py_None) == (width == 0)) {
            PyErr_Format(PyExc_ValueError, "column %zd: a width, or starts, not both", c);
            goto fail;
        }
        cols[c].width = width;
    }
    Py_ssize_t size = checked_size(cols, ncols, n);
    if (size < 0)
        goto fail;
    PyObject *out = PyBytes_FromStringAndSize(NULL, size);
    if (!out)
        goto fail;
    unsigned char *w = (unsigned char *)PyBytes_AS_STRING(out);
    unsigned char *end = w + size;
    int changed = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n && !changed; i++) {
        if (end - w < 2) {
            changed = 1;
            break;
        }
        put16(w, (uint16_t)ncols);
        w += 2;
        for (Py_ssize_t c = 0; c < ncols; c++) {
            Field *f = &cols[c];
            int32_t l = ((const int32_t *)f->lengths.buf)[i];
            int64_t at = f->starts.obj ? ((const int64_t *)f->starts.buf)[i] : i * f->width;
            if (end - w < 4 || l < -1 || (l > 0 && (end - w - 4 < l || at < 0 ||
                                                   at > f->data.len - l ||
                                                   (!f->starts.obj && l != f->width)))) {
                changed = 1;
                break;
            }
            put32(w, (uint32_t)l);
            w += 4;
            if (l <= 0)
                continue;
            const unsigned char *src = (const unsigned char *)f->data.buf + at;
            switch (l) { /* the fixed widths, as copies of a constant size: no call */
            case 8: memcpy(w, src, 8); break;
            case 4: memcpy(w, src, 4); break;
            case 1: *w = *src; break;
            default: memcpy(w, src, (size_t)l);
            }
            w += l;
        }
    }
    Py_END_ALLOW_THREADS
    if (changed || w != end) {
        Py_DECREF(out);
        PyErr_SetString(PyExc_ValueError, "the columns changed while their rows were written");
        goto fail;
    }
    release(cols, ncols);
    Py_DECREF(items);
    return out;

fail:
    release(cols, ncols);
    Py_DECREF(items);
    return NULL;
}

static PyMethodDef methods[] = {
    {"encode", encode, METH_VARARGS,
     "encode(n, columns) -> bytes: n binary COPY rows from encoded columns (see the module's "
     "source for the layout)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "pgmonkey.frames._binencode", "Columns into binary COPY rows.", -1,
    methods,
};

PyMODINIT_FUNC PyInit__binencode(void) { return PyModule_Create(&module); }
