/* GA101's screen in one pass: gradaudit.checks.gradient._screen_block, fused.
 *
 * For the m inner points of a block of a sorted probe, with y the forward's values (one
 * more on each side), a the backward's values and inv the reciprocal gaps between
 * neighbours (m + 1 of them):
 *
 *     left  = (y[i+1] - y[i])   * inv[i]         the secant to the left neighbour
 *     right = (y[i+2] - y[i+1]) * inv[i+1]       the secant to the right neighbour
 *     bound = |a[i] - left| + |a[i] - right|
 *           + 4 eps |y[i+1]| max(inv[i], inv[i+1])  the secants' rounding (the larger
 *                                                   reciprocal is that of the shorter gap)
 *           - rtol/2 |left|
 *     out[i] = bound < atol/2                       (NaN and inf fail)
 *
 * and returns how many passed.
 * The PyTorch version makes a dozen passes over the block; this one reads each value once.
 * The operations and their order are PyTorch's, and the build turns off the contraction of
 * a * b + c into one rounding (-ffp-contract=off), so both give the same verdict at every
 * point; the tests compare them. Plain C99: the compiler vectorises the loop. Built as an
 * optional extension (setup.py); gradaudit uses the PyTorch version where it is missing.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(_MSC_VER)
#define restrict __restrict
#endif

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
/* an AVX2 build and a baseline build of the loop, picked when the module loads (the
   baseline, SSE2, cannot pack double comparisons into bytes, so it stays scalar) */
#define SCREEN_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define SCREEN_CLONES
#endif

SCREEN_CLONES
static Py_ssize_t screen_loop(const double *restrict y, const double *restrict a, const double *restrict inv,
                              uint8_t *restrict out, Py_ssize_t m, double half_rtol, double half_atol) {
    const double rounding = 4 * DBL_EPSILON;
    Py_ssize_t passed = 0;
    for (Py_ssize_t i = 0; i < m; i++) {
        double left = (y[i + 1] - y[i]) * inv[i];
        double right = (y[i + 2] - y[i + 1]) * inv[i + 1];
        double shorter = inv[i] > inv[i + 1] ? inv[i] : inv[i + 1];
        double bound = fabs(a[i] - left) + fabs(a[i] - right);
        bound = bound + rounding * fabs(y[i + 1]) * shorter;
        bound = bound - half_rtol * fabs(left);
        out[i] = bound < half_atol;
        passed += out[i];
    }
    return passed;
}

enum { Y, ANALYTIC, INVERSE_STEP, OUT, BUFFERS };

static int is_float64(const Py_buffer *view) {
    return view->itemsize == sizeof(double) && view->format != NULL && strcmp(view->format, "d") == 0;
}

static PyObject *screen(PyObject *self, PyObject *args) {
    (void)self;
    static const char *names[BUFFERS] = {"y", "analytic", "inverse_step", "out"};
    PyObject *objects[BUFFERS];
    double rtol, atol;
    if (!PyArg_ParseTuple(args, "OOOOdd", &objects[Y], &objects[ANALYTIC], &objects[INVERSE_STEP], &objects[OUT],
                          &rtol, &atol))
        return NULL;
    Py_buffer views[BUFFERS];
    int taken = 0;
    PyObject *result = NULL;
    for (; taken < BUFFERS; taken++) {
        int flags = (taken == OUT ? PyBUF_WRITABLE : 0) | PyBUF_C_CONTIGUOUS | PyBUF_FORMAT;
        if (PyObject_GetBuffer(objects[taken], &views[taken], flags) < 0)
            goto done;
    }
    for (int k = Y; k <= INVERSE_STEP; k++) {
        if (!is_float64(&views[k])) {
            PyErr_Format(PyExc_TypeError, "%s must be a contiguous float64 buffer", names[k]);
            goto done;
        }
    }
    if (views[OUT].itemsize != 1) {
        PyErr_SetString(PyExc_TypeError, "out must be a contiguous bool buffer");
        goto done;
    }
    Py_ssize_t m = views[ANALYTIC].len / (Py_ssize_t)sizeof(double);
    Py_ssize_t item = (Py_ssize_t)sizeof(double);
    if (views[Y].len != (m + 2) * item || views[INVERSE_STEP].len != (m + 1) * item || views[OUT].len != m) {
        PyErr_SetString(PyExc_ValueError, "screen needs len(y) - 2 == len(inverse_step) - 1 == len(analytic) == len(out)");
        goto done;
    }
    Py_ssize_t passed;
    Py_BEGIN_ALLOW_THREADS
    passed = screen_loop((const double *)views[Y].buf, (const double *)views[ANALYTIC].buf,
                         (const double *)views[INVERSE_STEP].buf, (uint8_t *)views[OUT].buf, m, rtol / 2, atol / 2);
    Py_END_ALLOW_THREADS
    result = PyLong_FromSsize_t(passed);
done:
    for (int k = 0; k < taken; k++)
        PyBuffer_Release(&views[k]);
    return result;
}

static PyMethodDef methods[] = {
    {"screen", screen, METH_VARARGS,
     "screen(y, analytic, inverse_step, out, rtol, atol) -> how many passed: GA101's screen of the m inner "
     "points of a block (float64 buffers, len(y) = m + 2, len(inverse_step) = m + 1) into the bool buffer out (m)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_screen", "GA101's screen, fused (optional).", -1,
                                    methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__screen(void) { return PyModule_Create(&module); }
