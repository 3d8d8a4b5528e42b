/* The common case of `SharedCounterTable.take` in C: one window, the key in its home slot.
 *
 * Why C: from Python, the take costs two ctypes calls for the stripe's robust mutex and a struct
 * read and write of 64-bit values that do not fit mypyc's tagged integers (~1.2 us in all, the
 * largest single cost of the rate-limiting plugin); here it is one call of ~50 ns. Everything
 * that is not the common case (the home slot holds another key or is free, the lock is busy, a
 * dead worker left it inconsistent, several windows) answers "undecided" and the Python code in
 * shared_table.py does it, so the table's rules live in one place. The slot layout is that of
 * `shared_table._SLOT` ("<Qqqq", little endian); see that module's docstring.
 *
 * Built by scripts/build_native.py with the mypyc modules and held to the same staleness check;
 * without it the table runs the Python path alone.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <endian.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

/* Not a count: the caller must take the slow path (kept within mypyc's short integers). */
#define UNDECIDED (-(1LL << 61))
/* Undecided, and the lock's last owner had died holding it: it was recovered (caller logs). */
#define RECOVERED (UNDECIDED - 1)

static inline int64_t load64(const unsigned char *at) {
    uint64_t raw;
    memcpy(&raw, at, 8);
    return (int64_t)le64toh(raw);
}

static inline void store64(unsigned char *at, int64_t value) {
    uint64_t raw = htole64((uint64_t)value);
    memcpy(at, &raw, 8);
}

/* take_home(lock_address, slot_address, slot_key, start, end, limit, amount) -> int
 *
 * lock_address: the stripe's pthread mutex, or 0 when no other process can use the table.
 * Returns the window's count after counting `amount` (>= 0), or -(count + 1) when counting it
 * would exceed `limit` (nothing counted), or UNDECIDED / RECOVERED (nothing done).
 */
static PyObject *take_home(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "take_home() takes exactly 7 arguments");
        return NULL;
    }
    uintptr_t lock_address = (uintptr_t)PyLong_AsUnsignedLong(args[0]);
    uintptr_t slot_address = (uintptr_t)PyLong_AsUnsignedLong(args[1]);
    uint64_t slot_key = PyLong_AsUnsignedLong(args[2]);
    long long start = PyLong_AsLongLong(args[3]);
    long long end = PyLong_AsLongLong(args[4]);
    long long limit = PyLong_AsLongLong(args[5]);
    long long amount = PyLong_AsLongLong(args[6]);
    if (PyErr_Occurred()) {
        return NULL;
    }
    if (slot_address == 0 || amount < 0) {
        PyErr_SetString(PyExc_ValueError, "take_home(): no slot address, or a negative amount");
        return NULL;
    }
    pthread_mutex_t *lock = (pthread_mutex_t *)lock_address;
    if (lock != NULL) {
        int status = pthread_mutex_trylock(lock);
        if (status == EOWNERDEAD) {
            /* The dead owner's take was written or not (one slot write each): the data is sound. */
            pthread_mutex_consistent(lock);
            pthread_mutex_unlock(lock);
            return PyLong_FromLongLong(RECOVERED);
        }
        if (status != 0) {
            return PyLong_FromLongLong(UNDECIDED); /* busy: the caller waits without the fast path */
        }
    }
    unsigned char *slot = (unsigned char *)slot_address;
    long long result;
    if ((uint64_t)load64(slot) != slot_key) {
        result = UNDECIDED; /* another key, or free: probing and claiming are the Python path's */
    } else {
        int64_t window_start = load64(slot + 8);
        int64_t window_end = load64(slot + 16);
        int64_t count = load64(slot + 24);
        if (window_start < start) { /* the slot holds an older window of this counter */
            window_start = start;
            window_end = end;
            count = 0;
        }
        if (count + amount > limit) {
            result = -(count + 1);
        } else {
            count += amount;
            store64(slot + 8, window_start);
            store64(slot + 16, window_end);
            store64(slot + 24, count);
            result = count;
        }
    }
    if (lock != NULL) {
        pthread_mutex_unlock(lock);
    }
    return PyLong_FromLongLong(result);
}

static PyMethodDef methods[] = {
    {"take_home", (PyCFunction)(void (*)(void))take_home, METH_FASTCALL,
     "Count in a key's home slot under its stripe's lock (see the module source)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "forecourt.state._slot_take",
    "The common case of SharedCounterTable.take in C (see shared_table.py).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__slot_take(void) {
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddIntConstant(module, "UNDECIDED", (long)UNDECIDED) < 0 ||
        PyModule_AddIntConstant(module, "RECOVERED", (long)RECOVERED) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
