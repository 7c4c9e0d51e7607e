/* Keys written twice in one JSON object, found in one pass over the text (``schemas.channel.duplicate_key``).

JSON leaves an object with a key twice to the reader: most readers keep the last value and drop the other
without a word. idres rejects such a record instead, and this scan makes the check cheap enough to run on
every record. It is optional, like the comparison in resolver/matching/_ccompare.c: where it was not built,
the Python definition gives the same answers. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#define MAX_DEPTH 64   /* nesting followed here; deeper: not told here */
#define MAX_KEYS 256   /* keys held at once (an object's, and its enclosing objects'); more: not told here */

typedef struct {
    const char *at;
    Py_ssize_t len;
} Key;

/* 0: no object of the text has a key twice; 1: one has; 2: not told here (a key written with an escape, which
   may spell another key; more keys or deeper nesting than followed; text that is not JSON). */
static int scan(const char *p, Py_ssize_t len) {
    Key keys[MAX_KEYS];
    Py_ssize_t first[MAX_DEPTH]; /* where each open object's keys start in ``keys`` */
    char object[MAX_DEPTH];      /* whether each open container is an object */
    char expecting[MAX_DEPTH];   /* whether an open object's next string is a key */
    Py_ssize_t held = 0;
    int depth = -1;
    for (Py_ssize_t i = 0; i < len; i++) {
        char c = p[i];
        if (c == '{' || c == '[') {
            if (++depth >= MAX_DEPTH)
                return 2;
            object[depth] = (c == '{');
            expecting[depth] = (c == '{');
            first[depth] = held;
        } else if (c == '}' || c == ']') {
            if (depth < 0)
                return 2;
            held = first[depth];
            depth--;
        } else if (c == ',') {
            if (depth >= 0 && object[depth])
                expecting[depth] = 1;
        } else if (c == '"') {
            Py_ssize_t k = i + 1;
            int escaped = 0;
            while (k < len && p[k] != '"') {
                if (p[k] == '\\') {
                    escaped = 1;
                    k++;
                }
                k++;
            }
            if (k >= len)
                return 2;
            if (depth >= 0 && object[depth] && expecting[depth]) {
                expecting[depth] = 0;
                if (escaped)
                    return 2;
                Py_ssize_t n = k - i - 1;
                for (Py_ssize_t m = first[depth]; m < held; m++)
                    if (keys[m].len == n && memcmp(keys[m].at, p + i + 1, (size_t)n) == 0)
                        return 1;
                if (held >= MAX_KEYS)
                    return 2;
                keys[held].at = p + i + 1;
                keys[held].len = n;
                held++;
            }
            i = k;
        }
    }
    return depth == -1 ? 0 : 2;
}

static PyObject *duplicate_keys(PyObject *self, PyObject *text) {
    if (PyUnicode_Check(text)) {
        Py_ssize_t len;
        const char *p = PyUnicode_AsUTF8AndSize(text, &len);
        if (p == NULL) { /* (a lone surrogate: not told here) */
            PyErr_Clear();
            return PyLong_FromLong(2);
        }
        return PyLong_FromLong(scan(p, len));
    }
    Py_buffer view; /* bytes, bytearray, memoryview: what the records' reader takes */
    if (PyObject_GetBuffer(text, &view, PyBUF_SIMPLE) != 0)
        return NULL;
    int told = scan((const char *)view.buf, view.len);
    PyBuffer_Release(&view);
    return PyLong_FromLong(told);
}

static PyMethodDef methods[] = {
    {"duplicate_keys", duplicate_keys, METH_O,
     "duplicate_keys(text): 0 when no object of the JSON text has a key twice, 1 when one has, 2 when that is not "
     "told here (a key written with an escape, more keys or deeper nesting than followed, text that is not JSON)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_cjson", NULL, -1, methods};

PyMODINIT_FUNC PyInit__cjson(void) { return PyModule_Create(&module); }
