/* gradaudit's fused loops over float64 blocks: GA101's screen and the evaluation's scan.
 *
 * screen: gradaudit.checks.gradient._screen_block in one pass. For the m inner points of a
 * block of a sorted probe x, with y the forward's values and a the backward's values at the
 * inner points:
 *
 *     inv_left = 1 / (x[i+1] - x[i]),  inv_right = 1 / (x[i+2] - x[i+1])
 *     left  = (y[i+1] - y[i])   * inv_left       the secant to the left neighbour
 *     right = (y[i+2] - y[i+1]) * inv_right      the secant to the right neighbour
 *     bound = |a[i] - left| + |a[i] - right|
 *           + 4 eps |y[i+1]| max(inv_left, inv_right)  the secants' rounding (the larger
 *                                                      reciprocal is the shorter gap's)
 *           - rtol/2 |left|
 *     out[i] = bound < atol/2                       (NaN and inf fail)
 *
 * and returns how many passed. The PyTorch version makes a dozen passes over the block and
 * reads the reciprocal gaps cached with the probe; this one reads each value once and
 * divides instead (the block of x is in cache, having just been copied for the target,
 * where the cached reciprocals come from memory). The operations and their order are
 * PyTorch's, division is correctly rounded on both sides, and the build turns off the
 * contraction of a * b + c into one rounding (-ffp-contract=off), so both give the same
 * verdict at every point; the tests compare them.
 *
 * scan: how many values of a block are NaN or +-inf, and how many are -0.0, in one pass over
 * the bit patterns (gradaudit.scans.flags; NumPy and PyTorch take a pass for each, and one
 * more to count).
 *
 * Plain C99: the compiler vectorises the loops. Built as an optional extension (setup.py);
 * gradaudit does the same work with PyTorch and NumPy where it is missing.
 *
 * On Linux a block is split between the threads of PyTorch's own OpenMP team: the module
 * finds the GNU OpenMP runtime (libgomp) that torch has loaded and calls it through its
 * stable ABI (GOMP_parallel). It never loads a runtime itself, so there is one pool of
 * threads (a second one would compete with torch's, which spin after each parallel region)
 * and torch.set_num_threads applies. The split is the one torch gives an elementwise kernel
 * over the block, so each thread mostly reads what it has just written. Each point's
 * verdict is its own and the counts are sums, so the split changes nothing. Where no libgomp
 * is loaded (another runtime, another platform) the loops run on the calling thread.
 */
#if defined(__linux__)
#define _GNU_SOURCE /* dl_iterate_phdr, RTLD_NOLOAD */
#endif
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__linux__)
#include <dlfcn.h>
#include <link.h>
#define TEAM
#endif

#if defined(_MSC_VER)
#define restrict __restrict
#endif

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
/* AVX-512 (GCC 12 on: older ones do not know the x86-64-v4 level), AVX2 and baseline builds
   of the loops, picked when the module loads (the baseline, SSE2, cannot pack double
   comparisons into bytes, so it stays scalar) */
#if __GNUC__ >= 12
#define LOOP_CLONES __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#else
#define LOOP_CLONES __attribute__((target_clones("avx2", "default")))
#endif
#else
#define LOOP_CLONES
#endif

LOOP_CLONES
static Py_ssize_t screen_loop(const double *restrict x, const double *restrict y, const double *restrict a,
                              uint8_t *restrict out, Py_ssize_t m, double half_rtol, double half_atol) {
    const double rounding = 4 * DBL_EPSILON;
    Py_ssize_t passed = 0;
    for (Py_ssize_t i = 0; i < m; i++) {
        double inv_left = 1.0 / (x[i + 1] - x[i]);
        double inv_right = 1.0 / (x[i + 2] - x[i + 1]);
        double left = (y[i + 1] - y[i]) * inv_left;
        double right = (y[i + 2] - y[i + 1]) * inv_right;
        double shorter = inv_left > inv_right ? inv_left : inv_right;
        double bound = fabs(a[i] - left) + fabs(a[i] - right);
        bound = bound + rounding * fabs(y[i + 1]) * shorter;
        bound = bound - half_rtol * fabs(left);
        out[i] = bound < half_atol;
        passed += out[i];
    }
    return passed;
}

LOOP_CLONES
static void scan_loop(const double *restrict v, Py_ssize_t m, Py_ssize_t counts[2]) {
    const uint64_t exponent = 0x7ff0000000000000u, sign = 0x8000000000000000u;
    Py_ssize_t nonfinite = 0, negative_zero = 0;
    for (Py_ssize_t i = 0; i < m; i++) {
        uint64_t bits;
        memcpy(&bits, v + i, sizeof bits);
        nonfinite += (bits & exponent) == exponent; /* inf and NaN: every exponent bit set */
        negative_zero += bits == sign;              /* -0.0: the sign bit alone */
    }
    counts[0] += nonfinite;
    counts[1] += negative_zero;
}

/* torch's grain for elementwise kernels (at::internal::GRAIN_SIZE): smaller blocks stay on
   one thread, as torch's own kernels over them do */
#define GRAIN 32768

/* A loop over points lo..hi-1 of m, which adds what it counts to counts[0] (and counts[1]). */
struct work {
    void (*loop)(const struct work *work, Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t counts[2]);
    const double *x, *y, *a; /* the screen reads all three, the scan a alone */
    uint8_t *out;
    double half_rtol, half_atol;
    Py_ssize_t m, counts[2];
};

static void screen_share(const struct work *work, Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t counts[2]) {
    counts[0] += screen_loop(work->x + lo, work->y + lo, work->a + lo, work->out + lo, hi - lo, work->half_rtol,
                             work->half_atol);
}

static void scan_share(const struct work *work, Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t counts[2]) {
    scan_loop(work->a + lo, hi - lo, counts);
}

#ifdef TEAM
/* The loaded libgomp's entry points: GOMP_parallel(fn, data, num_threads, flags) runs
   fn(data) on a team (the calling thread is one of them); NULL where none is loaded. */
static struct {
    int looked;
    void (*parallel)(void (*fn)(void *), void *data, unsigned num_threads, unsigned flags);
    int (*max_threads)(void);
    int (*thread_num)(void);
    int (*num_threads)(void);
} gomp;

static int find_libgomp(struct dl_phdr_info *info, size_t size, void *path) {
    (void)size;
    const char *base = strrchr(info->dlpi_name, '/');
    base = base != NULL ? base + 1 : info->dlpi_name;
    if (strncmp(base, "libgomp", 7) != 0) /* also torch's older, renamed copies (libgomp-<hash>.so.1) */
        return 0;
    *(const char **)path = info->dlpi_name;
    return 1;
}

/* Look once (with the GIL held) for a libgomp already in the process; never load one. */
static void find_gomp(void) {
    if (gomp.looked)
        return;
    gomp.looked = 1;
    const char *path = NULL;
    dl_iterate_phdr(find_libgomp, &path);
    void *runtime = path != NULL ? dlopen(path, RTLD_NOW | RTLD_NOLOAD) : NULL;
    if (runtime == NULL)
        return;
    *(void **)&gomp.max_threads = dlsym(runtime, "omp_get_max_threads");
    *(void **)&gomp.thread_num = dlsym(runtime, "omp_get_thread_num");
    *(void **)&gomp.num_threads = dlsym(runtime, "omp_get_num_threads");
    *(void **)&gomp.parallel = dlsym(runtime, "GOMP_parallel");
    if (!gomp.max_threads || !gomp.thread_num || !gomp.num_threads)
        gomp.parallel = NULL;
}

/* One thread's share: contiguous, as torch's parallel_for makes them, cut at multiples of
   64 points so that no two threads write into one cache line of out. */
static void run_share(void *data) {
    struct work *work = data;
    Py_ssize_t team = gomp.num_threads(), me = gomp.thread_num();
    Py_ssize_t share = (work->m + team - 1) / team;
    Py_ssize_t lo = (share * me) & ~(Py_ssize_t)63;
    Py_ssize_t hi = me == team - 1 ? work->m : (share * (me + 1)) & ~(Py_ssize_t)63;
    Py_ssize_t counts[2] = {0, 0};
    work->loop(work, lo, hi, counts);
    __atomic_fetch_add(&work->counts[0], counts[0], __ATOMIC_RELAXED);
    __atomic_fetch_add(&work->counts[1], counts[1], __ATOMIC_RELAXED);
}
#endif

/* How many threads take m points: torch's count (the loaded libgomp's), one per grain. Call
   with the GIL held. */
static int team_size(Py_ssize_t m) {
#ifdef TEAM
    find_gomp();
    if (gomp.parallel != NULL) {
        Py_ssize_t threads = gomp.max_threads(), grains = (m + GRAIN - 1) / GRAIN;
        if (threads > grains)
            threads = grains;
        return threads > 1 ? (int)threads : 1;
    }
#endif
    (void)m;
    return 1;
}

/* Run work over its m points on team_size(m) threads, with the GIL released. */
static void run(struct work *work) {
    int threads = team_size(work->m);
    Py_BEGIN_ALLOW_THREADS
#ifdef TEAM
    if (threads > 1)
        gomp.parallel(run_share, work, (unsigned)threads, 0);
    else
#endif
        work->loop(work, 0, work->m, work->counts);
    Py_END_ALLOW_THREADS
    (void)threads;
}

enum { X, Y, ANALYTIC, OUT, BUFFERS };

static int is_float64(const Py_buffer *view) {
    return view->itemsize == sizeof(double) && view->format != NULL && strcmp(view->format, "d") == 0;
}

static PyObject *screen(PyObject *self, PyObject *args) {
    (void)self;
    static const char *names[BUFFERS] = {"x", "y", "analytic", "out"};
    PyObject *objects[BUFFERS];
    double rtol, atol;
    if (!PyArg_ParseTuple(args, "OOOOdd", &objects[X], &objects[Y], &objects[ANALYTIC], &objects[OUT], &rtol, &atol))
        return NULL;
    Py_buffer views[BUFFERS];
    int taken = 0;
    PyObject *result = NULL;
    for (; taken < BUFFERS; taken++) {
        int flags = (taken == OUT ? PyBUF_WRITABLE : 0) | PyBUF_C_CONTIGUOUS | PyBUF_FORMAT;
        if (PyObject_GetBuffer(objects[taken], &views[taken], flags) < 0)
            goto done;
    }
    for (int k = X; k <= ANALYTIC; k++) {
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
    if (views[X].len != (m + 2) * item || views[Y].len != (m + 2) * item || views[OUT].len != m) {
        PyErr_SetString(PyExc_ValueError, "screen needs len(x) - 2 == len(y) - 2 == len(analytic) == len(out)");
        goto done;
    }
    struct work work = {screen_share, (const double *)views[X].buf, (const double *)views[Y].buf,
                        (const double *)views[ANALYTIC].buf, (uint8_t *)views[OUT].buf, rtol / 2, atol / 2, m, {0, 0}};
    run(&work);
    result = PyLong_FromSsize_t(work.counts[0]);
done:
    for (int k = 0; k < taken; k++)
        PyBuffer_Release(&views[k]);
    return result;
}

static PyObject *scan(PyObject *self, PyObject *arg) {
    (void)self;
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        return NULL;
    PyObject *result = NULL;
    if (!is_float64(&view)) {
        PyErr_SetString(PyExc_TypeError, "values must be a contiguous float64 buffer");
    } else {
        struct work work = {scan_share, NULL, NULL, (const double *)view.buf, NULL, 0, 0,
                            view.len / (Py_ssize_t)sizeof(double), {0, 0}};
        run(&work);
        result = Py_BuildValue("(nn)", work.counts[0], work.counts[1]);
    }
    PyBuffer_Release(&view);
    return result;
}

static PyObject *threads(PyObject *self, PyObject *args) {
    (void)self;
    Py_ssize_t m;
    if (!PyArg_ParseTuple(args, "n", &m))
        return NULL;
    return PyLong_FromLong(team_size(m));
}

static PyMethodDef methods[] = {
    {"screen", screen, METH_VARARGS,
     "screen(x, y, analytic, out, rtol, atol) -> how many passed: GA101's screen of the m inner points of a "
     "block of the sorted probe x (float64 buffers, len(x) = len(y) = m + 2, len(analytic) = m) into the bool "
     "buffer out (m)."},
    {"scan", scan, METH_O,
     "scan(values) -> (non-finite, negative zeros): how many of the float64 values are NaN or +-inf, and how "
     "many are -0.0."},
    {"threads", threads, METH_VARARGS,
     "threads(m) -> how many threads take a block of m points: torch's OpenMP team (the libgomp loaded in "
     "the process), at most one per 32768 points; 1 where no libgomp is loaded."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fused",
                                    "GA101's screen and the evaluation's scan, fused (optional).", -1,
                                    methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__fused(void) { return PyModule_Create(&module); }
