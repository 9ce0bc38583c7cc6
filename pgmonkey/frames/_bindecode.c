/* Binary COPY rows into columns, compiled.

   decode() walks the rows of a binary COPY stream (after its header) and writes each field
   into its column's output buffer: fixed-width values in native byte order, NULLs as 1 in
   a byte mask, text as Arrow's large_string layout (int64 end offsets and the bytes), and
   numeric as the double nearest its exact decimal value (what parsing PostgreSQL's text for
   it gives). The buffers are numpy arrays the caller allocated; decode() only fills them,
   and stops at the first row that does not fit (rows: `capacity`; a text column's bytes:
   its buffer), saying which text column needs how much room. Only whole rows are taken:
   what is left of a row cut by the end of the data is decoded with the next data.

   Kinds (one byte per column):
     'h' int2, 'i' int4, 'q' int8, 'I' oid (uint4)  -> int64
     'd' float8                                      -> float64
     '?' bool                                        -> uint8
     'D' date (days from 2000-01-01)                 -> int32, as sent
     'T' timestamp, timestamptz (us from 2000-01-01) -> int64, as sent
     't' text (and types sent as their text bytes)   -> int64 end offsets + bytes
     'n' numeric                                     -> float64 (NaN, +-inf as themselves) */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static inline uint16_t be16(const unsigned char *p) { return (uint16_t)((p[0] << 8) | p[1]); }

static inline uint32_t be32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline uint64_t be64(const unsigned char *p)
{
    return ((uint64_t)be32(p) << 32) | be32(p + 4);
}

/* numeric's wire form: ndigits, weight, sign, dscale (int16 each), then ndigits base-10000
   digits. Its value is digits * 10000^(weight + 1 - ndigits): written as decimal text,
   strtod rounds it correctly, as it would PostgreSQL's own text of the value. */
static int numeric_to_double(const unsigned char *p, int32_t len, double *out)
{
    if (len < 8)
        return -1;
    int ndigits = (int16_t)be16(p);
    int weight = (int16_t)be16(p + 2);
    uint16_t sign = be16(p + 4);
    if (ndigits < 0 || len != 8 + 2 * ndigits)
        return -1;
    if (sign == 0xC000) {
        *out = NAN;
        return 0;
    }
    if (sign == 0xD000 || sign == 0xF000) {
        *out = sign == 0xD000 ? HUGE_VAL : -HUGE_VAL;
        return 0;
    }
    if (sign != 0x0000 && sign != 0x4000)
        return -1;
    if (ndigits == 0) { /* zero (PostgreSQL has no negative zero numeric) */
        *out = 0.0;
        return 0;
    }
#if defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD == 0
    /* Clinger's fast path: a significand of at most 2^53 and a power of ten of at most 22
       are both exact doubles, so one IEEE multiplication or division rounds their exact
       product or quotient correctly, which is what strtod gives. Most numerics of a table
       (numeric(12,2): 16 digits at most) take it; the others are written out as text. */
    if (ndigits <= 4) {
        static const double powers[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                        1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                        1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
        uint64_t significand = 0;
        for (int i = 0; i < ndigits; i++) {
            int d = (int16_t)be16(p + 8 + 2 * i);
            if (d < 0 || d > 9999)
                return -1;
            significand = significand * 10000 + (uint64_t)d;
        }
        int exponent = 4 * (weight + 1 - ndigits);
        if (significand <= (UINT64_C(1) << 53) && exponent >= -22 && exponent <= 22) {
            double v = (double)significand;
            v = exponent < 0 ? v / powers[-exponent] : v * powers[exponent];
            *out = sign == 0x4000 ? -v : v;
            return 0;
        }
    }
#endif
    char small[256];
    size_t need = (size_t)ndigits * 4 + 16;
    char *text = need <= sizeof small ? small : malloc(need);
    if (!text)
        return -2;
    char *w = text;
    if (sign == 0x4000)
        *w++ = '-';
    for (int i = 0; i < ndigits; i++) {
        int d = (int16_t)be16(p + 8 + 2 * i);
        if (d < 0 || d > 9999) {
            if (text != small)
                free(text);
            return -1;
        }
        w[0] = (char)('0' + d / 1000);
        w[1] = (char)('0' + d / 100 % 10);
        w[2] = (char)('0' + d / 10 % 10);
        w[3] = (char)('0' + d % 10);
        w += 4;
    }
    w += sprintf(w, "e%d", 4 * (weight + 1 - ndigits));
    *out = strtod(text, NULL);
    if (text != small)
        free(text);
    return 0;
}

typedef struct {
    char kind;
    Py_buffer values; /* int64/float64/uint8/int32 values, or a text column's end offsets */
    Py_buffer nulls;  /* uint8: 1 where NULL, written only there (the caller gives zeros) */
    Py_buffer data;   /* a text column's bytes, from offset `base` of the whole column */
    int64_t base;     /* the column's end offset before this call (its offsets' first item) */
    int64_t used;     /* the column's end offset so far */
} Column;

static int width_of(char kind)
{
    switch (kind) {
    case 'h': return 2;
    case 'i': case 'I': case 'D': return 4;
    case 'q': case 'd': case 'T': return 8;
    case '?': return 1;
    default: return -1; /* variable */
    }
}

static void release(Column *cols, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        if (cols[i].values.obj)
            PyBuffer_Release(&cols[i].values);
        if (cols[i].nulls.obj)
            PyBuffer_Release(&cols[i].nulls);
        if (cols[i].data.obj)
            PyBuffer_Release(&cols[i].data);
    }
    PyMem_Free(cols);
}

/* decode(data, start, kinds, outputs, capacity) -> (end, rows, finished)
   outputs: one (values, nulls, data_or_None) per column, writable buffers for `capacity`
   rows; nulls come zeroed (only a NULL's 1 is written: a column without NULLs never
   touches its flags' memory, which a fresh memory map does not even take). A text
   column's values are capacity + 1 end offsets, the first one (the column's length so
   far) given by the caller; its data receives the bytes from there.
   Returns (end, rows, finished, column, need): end: where the first row not taken starts;
   finished: the stream's trailer was reached; column >= 0: that text column's data buffer
   had no room for the next row's value of `need` bytes (the caller makes room and calls
   again from end), else -1. */
static PyObject *decode(PyObject *module, PyObject *args)
{
    Py_buffer in;
    Py_ssize_t start, capacity;
    const char *kinds;
    Py_ssize_t ncols;
    PyObject *outputs;
    if (!PyArg_ParseTuple(args, "y*ny#O!n:decode", &in, &start, &kinds, &ncols, &PyList_Type,
                          &outputs, &capacity))
        return NULL;
    if (start < 0 || start > in.len || capacity < 0 || capacity > PY_SSIZE_T_MAX / 16) {
        PyBuffer_Release(&in);
        PyErr_SetString(PyExc_ValueError, "decode: start or capacity out of range");
        return NULL;
    }
    Column *cols = PyMem_Calloc(ncols ? ncols : 1, sizeof(Column));
    if (!cols) {
        PyBuffer_Release(&in);
        return PyErr_NoMemory();
    }
    if (PyList_GET_SIZE(outputs) != ncols) {
        PyErr_SetString(PyExc_ValueError, "decode: one output per column");
        goto fail;
    }
    for (Py_ssize_t c = 0; c < ncols; c++) {
        PyObject *out = PyList_GET_ITEM(outputs, c);
        PyObject *values, *nulls, *data;
        if (!PyArg_ParseTuple(out, "OOO:decode output", &values, &nulls, &data))
            goto fail;
        cols[c].kind = kinds[c];
        if (PyObject_GetBuffer(values, &cols[c].values, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0 ||
            PyObject_GetBuffer(nulls, &cols[c].nulls, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0)
            goto fail;
        int w = width_of(kinds[c]);
        Py_ssize_t item = kinds[c] == 'D' ? 4 : kinds[c] == '?' ? 1 : 8;
        Py_ssize_t rows_needed = kinds[c] == 't' ? capacity + 1 : capacity;
        if (cols[c].values.len < rows_needed * item || cols[c].nulls.len < capacity) {
            PyErr_SetString(PyExc_ValueError, "decode: an output is smaller than capacity");
            goto fail;
        }
        if (kinds[c] == 't') {
            if (PyObject_GetBuffer(data, &cols[c].data, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0)
                goto fail;
            cols[c].base = cols[c].used = ((int64_t *)cols[c].values.buf)[0];
        } else if (w < 0 && kinds[c] != 'n') {
            PyErr_Format(PyExc_ValueError, "decode: unknown kind %c", kinds[c]);
            goto fail;
        }
    }

    const unsigned char *buf = (const unsigned char *)in.buf;
    Py_ssize_t len = in.len, pos = start, rows = 0;
    int finished = 0, bad = 0;
    Py_ssize_t short_column = -1;
    int32_t short_need = 0;
    char bad_kind = 0;
    int32_t bad_len = 0;

    Py_BEGIN_ALLOW_THREADS
    while (rows < capacity) {
        if (len - pos < 2)
            break;
        int16_t count = (int16_t)be16(buf + pos);
        if (count == -1) {
            finished = 1;
            pos += 2;
            break;
        }
        if (count != ncols) {
            bad = 1;
            break;
        }
        Py_ssize_t p = pos + 2;
        int whole = 1;
        for (Py_ssize_t c = 0; c < ncols && whole; c++) {
            if (len - p < 4) {
                whole = 0;
                break;
            }
            int32_t flen = (int32_t)be32(buf + p);
            p += 4;
            Column *col = &cols[c];
            unsigned char *nulls = (unsigned char *)col->nulls.buf;
            if (flen < -1) {
                bad = 2, bad_kind = cols[c].kind, bad_len = flen;
                break;
            }
            if (flen < 0) {
                nulls[rows] = 1;
                switch (col->kind) {
                case '?': ((uint8_t *)col->values.buf)[rows] = 0; break;
                case 'D': ((int32_t *)col->values.buf)[rows] = 0; break;
                case 't': ((int64_t *)col->values.buf)[rows + 1] = col->used; break;
                case 'd': case 'n': ((double *)col->values.buf)[rows] = NAN; break;
                default: ((int64_t *)col->values.buf)[rows] = 0;
                }
                continue;
            }
            if (len - p < flen) {
                whole = 0;
                break;
            }
            const unsigned char *v = buf + p;
            p += flen;
            int w = width_of(col->kind);
            if (w > 0 && flen != w) {
                bad = 2, bad_kind = col->kind, bad_len = flen;
                break;
            }
            switch (col->kind) {
            case 'h': ((int64_t *)col->values.buf)[rows] = (int16_t)be16(v); break;
            case 'i': ((int64_t *)col->values.buf)[rows] = (int32_t)be32(v); break;
            case 'I': ((int64_t *)col->values.buf)[rows] = be32(v); break;
            case 'q': case 'T': ((int64_t *)col->values.buf)[rows] = (int64_t)be64(v); break;
            case 'd': {
                uint64_t bits = be64(v);
                memcpy((double *)col->values.buf + rows, &bits, 8);
                break;
            }
            case '?': ((uint8_t *)col->values.buf)[rows] = v[0] != 0; break;
            case 'D': ((int32_t *)col->values.buf)[rows] = (int32_t)be32(v); break;
            case 't':
                if (col->used - col->base + flen > col->data.len) {
                    short_column = c, short_need = flen;
                    break;
                }
                memcpy((char *)col->data.buf + (col->used - col->base), v, (size_t)flen);
                col->used += flen;
                ((int64_t *)col->values.buf)[rows + 1] = col->used;
                break;
            case 'n': {
                int r = numeric_to_double(v, flen, (double *)col->values.buf + rows);
                if (r) {
                    bad = r == -2 ? 4 : 3, bad_kind = 'n', bad_len = flen;
                }
                break;
            }
            }
            if (bad || short_column >= 0)
                break;
        }
        if (bad || !whole || short_column >= 0) {
            /* A cut row: its text bytes are written again with the next data. */
            for (Py_ssize_t c = 0; c < ncols; c++)
                if (cols[c].kind == 't')
                    cols[c].used = ((int64_t *)cols[c].values.buf)[rows];
            break;
        }
        pos = p;
        rows++;
    }
    Py_END_ALLOW_THREADS

    if (bad) {
        if (bad == 4)
            PyErr_NoMemory();
        else if (bad == 1)
            PyErr_Format(PyExc_ValueError, "binary COPY row of %d fields, expected %zd",
                         (int)(int16_t)be16(buf + pos), ncols);
        else
            PyErr_Format(PyExc_ValueError, "binary COPY value of %d bytes is not a valid '%c'",
                         (int)bad_len, bad_kind);
        goto fail;
    }
    release(cols, ncols);
    PyBuffer_Release(&in);
    return Py_BuildValue("nnOni", pos, rows, finished ? Py_True : Py_False, short_column,
                         (int)short_need);

fail:
    release(cols, ncols);
    PyBuffer_Release(&in);
    return NULL;
}

static PyMethodDef methods[] = {
    {"decode", decode, METH_VARARGS,
     "decode(data, start, kinds, outputs, capacity) -> (end, rows, finished): binary COPY "
     "rows into column buffers (see the module's source for the kinds)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "pgmonkey.frames._bindecode", "Binary COPY rows into columns.", -1,
    methods,
};

PyMODINIT_FUNC PyInit__bindecode(void) { return PyModule_Create(&module); }
