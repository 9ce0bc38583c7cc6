/* The receive loop of COPY ... TO STDOUT, compiled.

   libpq hands over a COPY stream one row at a time (PQgetCopyData). Through psycopg each
   row costs a Python call, a bytes object and an append: about 0.4 us, which for a million
   rows is as much client CPU as parsing them. read_rows() takes the rows already in libpq's
   buffer and appends them to a bytearray in one C loop: many rows per Python call.

   It calls libpq through function pointers that pgmonkey._psycopg binds once, taken from the
   very libpq psycopg itself is loaded with: a PGconn must only ever be handled by the
   library that made it. The pointer to the PGconn is psycopg's own (PGconn.pgconn_ptr).
   Reading the socket (PQconsumeInput) and waiting for it stay in Python, with psycopg's
   wait functions (sync or asyncio): this loop never blocks, so Ctrl-C and event loops work
   as they do for psycopg. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

typedef int (*get_copy_data_fn)(void *conn, char **buffer, int async);
typedef void (*freemem_fn)(void *ptr);

static get_copy_data_fn get_copy_data = NULL;
static freemem_fn freemem = NULL;

static PyObject *
bind(PyObject *module, PyObject *args)
{
    unsigned long long get, free_;
    if (!PyArg_ParseTuple(args, "KK:bind", &get, &free_))
        return NULL;
    if (!get || !free_) {
        PyErr_SetString(PyExc_ValueError, "bind: a libpq function address is 0");
        return NULL;
    }
    get_copy_data = (get_copy_data_fn)(uintptr_t)get;
    freemem = (freemem_fn)(uintptr_t)free_;
    Py_RETURN_NONE;
}

static PyObject *
read_rows(PyObject *module, PyObject *args)
{
    unsigned long long address;
    PyObject *block;
    Py_ssize_t size;
    if (!PyArg_ParseTuple(args, "KYn:read_rows", &address, &block, &size))
        return NULL;
    if (!get_copy_data) {
        PyErr_SetString(PyExc_RuntimeError, "read_rows: bind() was not called");
        return NULL;
    }
    if (!address) {
        PyErr_SetString(PyExc_ValueError, "read_rows: the connection is closed");
        return NULL;
    }
    void *conn = (void *)(uintptr_t)address;
    for (;;) {
        Py_ssize_t have = PyByteArray_GET_SIZE(block);
        if (have >= size)
            return PyLong_FromLong(1);
        char *row = NULL;
        int n = get_copy_data(conn, &row, 1);
        if (n > 0) {
            /* bytearray over-allocates, so appending row after row is amortised O(1). */
            int failed = PyByteArray_Resize(block, have + n) < 0;
            if (!failed)
                memcpy(PyByteArray_AS_STRING(block) + have, row, (size_t)n);
            freemem(row);
            if (failed)
                return NULL;
            continue;
        }
        /* 0: nothing buffered; -1: the data is over; -2: an error (in PQerrorMessage). */
        return PyLong_FromLong(n);
    }
}

static PyMethodDef methods[] = {
    {"bind", bind, METH_VARARGS,
     "bind(get_copy_data, freemem): the addresses of PQgetCopyData and PQfreemem in the libpq "
     "psycopg uses."},
    {"read_rows", read_rows, METH_VARARGS,
     "read_rows(pgconn_ptr, block, size) -> int: append the COPY rows libpq holds to the "
     "bytearray block while it is shorter than size. 1: block is full; 0: nothing more is "
     "buffered (read the socket); -1: the data is over; -2: an error (PQerrorMessage)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "pgmonkey._copyrows", "The compiled COPY receive loop.", -1, methods,
};

PyMODINIT_FUNC
PyInit__copyrows(void)
{
    return PyModule_Create(&module);
}
