/* The comparison vector of two attribute records, compiled: ``resolver.matching.comparisons.compare``.
 *
 * The same levels as the Python definition in comparisons.py (``compare_python``), which stays the
 * reference: tests compare the two over generated and real records, and a record this code does not
 * expect (a field that is not a str, an empty text, a name over MAX_LEN characters, a date not in the
 * canonical YYYY-MM-DD form) is compared by the Python definition.
 *
 * Jaro-Winkler is computed as rapidfuzz computes it (rapidfuzz.distance.JaroWinkler.similarity, prefix
 * weight 0.1, the same score cutoffs and the same floating-point operations in the same order), so a pair
 * at a threshold falls on the same side. The address's token-set ratio is rapidfuzz's own, called through
 * the Python function given to ``configure``. Built with -ffp-contract=off (no fused multiply-add).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <string.h>
#include <stdint.h>
#include <limits.h>

#define MAX_LEN 256   /* longer texts are compared by the Python definition */
#define MAX_TOKENS 64

enum { R_EXACT = 0, R_NICKNAME = 1, R_JW92 = 2, R_JW80 = 3, R_DIFFERENT = 4, R_NULL = 5 };

static PyObject *LV_NULL, *LV_EXACT, *LV_NICKNAME, *LV_JW92, *LV_JW80, *LV_DIFFERENT, *LV_SWAPPED,
    *LV_ONE_OFF, *LV_YEAR, *LV_MONTH, *LV_DECADE, *LV_TYPO, *LV_PREFIX;
static PyObject *NICK_INDEX;      /* dict: canonical first name -> tuple of nickname group numbers */
static PyObject *PY_COMPARE;      /* the Python definition, for what this code does not expect */
static PyObject *PY_TOKEN_SET;    /* (a, b) -> the address level from the token-set ratio */
static PyObject *PY_DOB;          /* the Python definition of the date-of-birth level */
static PyObject *ATTR[6];         /* first_name, last_name, date_of_birth, address, postcode, city */
static PyTypeObject *RECORD_TYPE; /* AttributeRecord: its fields are read from their slots directly */
static Py_ssize_t OFFSET[6];      /* where each field's slot is in an AttributeRecord */

static double JW_HIGH = 0.92, JW_LOW = 0.80;

typedef struct {
    int kind;
    const void *data;
    Py_ssize_t len;
} Text;

static inline Py_UCS4 at(const Text *t, Py_ssize_t i) { return PyUnicode_READ(t->kind, t->data, i); }

static inline void text_of(PyObject *s, Text *t)
{
    t->kind = PyUnicode_KIND(s);
    t->data = PyUnicode_DATA(s);
    t->len = PyUnicode_GET_LENGTH(s);
}

static inline int same(const Text *a, const Text *b)
{
    if (a->len != b->len)
        return 0;
    if (a->kind == b->kind)
        return memcmp(a->data, b->data, (size_t)a->len * (size_t)a->kind) == 0;
    for (Py_ssize_t i = 0; i < a->len; i++)
        if (at(a, i) != at(b, i))
            return 0;
    return 1;
}

/* reads two str objects; whether they are the same text */
static inline int read_same(PyObject *a, PyObject *b, Text *ta, Text *tb)
{
    text_of(a, ta);
    text_of(b, tb);
    return same(ta, tb);
}

/* -- Jaro-Winkler, as rapidfuzz computes it ------------------------------------------------------------ */

static double jaro_formula(Py_ssize_t p_len, Py_ssize_t t_len, Py_ssize_t common, Py_ssize_t transpositions)
{
    transpositions /= 2;
    double sim = 0.0;
    sim += (double)common / (double)p_len;
    sim += (double)common / (double)t_len;
    sim += ((double)common - (double)transpositions) / (double)common;
    return sim / 3.0;
}

static double jaro(const Text *s1, const Text *s2, double cutoff)
{
    Py_ssize_t p_len = s1->len, t_len = s2->len;
    if (p_len == 0 && t_len == 0)
        return 1.0;
    if (p_len == 0 || t_len == 0)
        return 0.0;
    {
        Py_ssize_t shorter = p_len < t_len ? p_len : t_len;
        if (!(jaro_formula(p_len, t_len, shorter, 0) >= cutoff))
            return 0.0;
    }
    if (p_len == 1 && t_len == 1)
        return at(s1, 0) == at(s2, 0) ? 1.0 : 0.0;
    Py_ssize_t bound, s1_len = p_len, s2_len = t_len;
    if (t_len > p_len) {
        bound = t_len / 2 - 1;
        if (t_len > p_len + bound)
            s2_len = p_len + bound;
    } else {
        bound = p_len / 2 - 1;
        if (p_len > t_len + bound)
            s1_len = t_len + bound;
    }
    unsigned char f1[MAX_LEN], f2[MAX_LEN];
    memset(f1, 0, (size_t)p_len);
    memset(f2, 0, (size_t)t_len);
    Py_ssize_t common = 0;
    for (Py_ssize_t i = 0; i < s1_len; i++) {
        Py_UCS4 ch = at(s1, i);
        Py_ssize_t low = i - bound > 0 ? i - bound : 0;
        Py_ssize_t hi = i + bound < t_len - 1 ? i + bound : t_len - 1;
        for (Py_ssize_t j = low; j <= hi && j < s2_len; j++) {
            if (!f2[j] && at(s2, j) == ch) {
                f1[i] = f2[j] = 1;
                common++;
                break;
            }
        }
    }
    if (common == 0 || !(jaro_formula(p_len, t_len, common, 0) >= cutoff))
        return 0.0;
    Py_ssize_t k = 0, trans = 0;
    for (Py_ssize_t i = 0; i < s1_len; i++) {
        if (!f1[i])
            continue;
        Py_ssize_t j = k;
        for (; j < t_len; j++) {
            if (f2[j]) {
                k = j + 1;
                break;
            }
        }
        if (at(s1, i) != at(s2, j))
            trans++;
    }
    double sim = jaro_formula(p_len, t_len, common, trans);
    return sim >= cutoff ? sim : 0.0;
}

static double jaro_winkler(const Text *s1, const Text *s2, double cutoff)
{
    cutoff = (double)(float)cutoff; /* (rapidfuzz takes the cutoff as a 32-bit float: 0.8 is 0.800000012) */
    Py_ssize_t shorter = s1->len < s2->len ? s1->len : s2->len;
    Py_ssize_t most = shorter < 4 ? shorter : 4, prefix = 0;
    while (prefix < most && at(s1, prefix) == at(s2, prefix))
        prefix++;
    double jaro_cutoff = cutoff;
    if (jaro_cutoff > 0.7) {
        double prefix_sim = (double)prefix * 0.1;
        if (prefix_sim >= 1.0) {
            jaro_cutoff = 0.7;
        } else {
            double needed = (prefix_sim - jaro_cutoff) / (prefix_sim - 1.0);
            jaro_cutoff = needed > 0.7 ? needed : 0.7;
        }
    }
    double sim = jaro(s1, s2, jaro_cutoff);
    if (sim > 0.7) {
        sim += (double)prefix * 0.1 * (1.0 - sim);
        if (sim > 1.0)
            sim = 1.0;
    }
    return sim >= cutoff ? sim : 0.0;
}

/* -- optimal string alignment distance of at most one --------------------------------------------------- */

static int osa_within_one(const Text *a, const Text *b)
{
    Py_ssize_t la = a->len, lb = b->len;
    if (la == lb) {
        Py_ssize_t first = -1, count = 0;
        for (Py_ssize_t i = 0; i < la; i++) {
            if (at(a, i) != at(b, i)) {
                if (count == 0)
                    first = i;
                if (++count > 2)
                    return 0;
            }
        }
        if (count <= 1)
            return 1;
        return first + 1 < la && at(a, first + 1) != at(b, first + 1) && at(a, first) == at(b, first + 1) &&
               at(a, first + 1) == at(b, first);
    }
    const Text *longer = la > lb ? a : b, *shorter = la > lb ? b : a;
    if (longer->len - shorter->len != 1)
        return 0;
    Py_ssize_t i = 0;
    while (i < shorter->len && at(longer, i) == at(shorter, i))
        i++;
    for (; i < shorter->len; i++)
        if (at(longer, i + 1) != at(shorter, i))
            return 0;
    return 1;
}

/* -- names ---------------------------------------------------------------------------------------------- */

static int jw_rank(const Text *a, const Text *b)
{
    double sim = jaro_winkler(a, b, JW_LOW);
    if (sim >= JW_HIGH)
        return R_JW92;
    if (sim >= JW_LOW)
        return R_JW80;
    return R_DIFFERENT;
}

/* what both names' comparisons begin with: R_NULL for a missing name (a NULL object), R_EXACT for the same
 * text, else -1 with the texts read */
static int plain_rank(PyObject *a, PyObject *b, Text *ta, Text *tb)
{
    if (a == NULL || b == NULL)
        return R_NULL;
    return read_same(a, b, ta, tb) ? R_EXACT : -1;
}

/* compare_last_name */
static int last_rank(PyObject *a, PyObject *b)
{
    Text ta, tb;
    int rank = plain_rank(a, b, &ta, &tb);
    return rank >= 0 ? rank : jw_rank(&ta, &tb);
}

/* -1: an error is set */
static int nickname_equivalent(PyObject *a, PyObject *b)
{
    PyObject *ga = PyDict_GetItemWithError(NICK_INDEX, a);
    if (ga == NULL)
        return PyErr_Occurred() ? -1 : 0;
    PyObject *gb = PyDict_GetItemWithError(NICK_INDEX, b);
    if (gb == NULL)
        return PyErr_Occurred() ? -1 : 0;
    if (!PyTuple_Check(ga) || !PyTuple_Check(gb)) {
        PyErr_SetString(PyExc_TypeError, "nickname groups must be tuples");
        return -1;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(ga); i++)
        for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(gb); j++) {
            int eq = PyObject_RichCompareBool(PyTuple_GET_ITEM(ga, i), PyTuple_GET_ITEM(gb, j), Py_EQ);
            if (eq != 0)
                return eq;
        }
    return 0;
}

/* compare_first_name; -1: an error is set */
static int first_rank(PyObject *a, PyObject *b)
{
    Text ta, tb;
    int rank = plain_rank(a, b, &ta, &tb);
    if (rank >= 0)
        return rank;
    int nick = nickname_equivalent(a, b);
    if (nick < 0)
        return -1;
    if (nick)
        return R_NICKNAME;
    if ((ta.len == 1 || tb.len == 1) && at(&ta, 0) == at(&tb, 0))
        return R_JW80;
    return jw_rank(&ta, &tb);
}

static PyObject *name_level(int rank)
{
    switch (rank) {
    case R_EXACT: return LV_EXACT;
    case R_NICKNAME: return LV_NICKNAME;
    case R_JW92: return LV_JW92;
    case R_JW80: return LV_JW80;
    case R_DIFFERENT: return LV_DIFFERENT;
    default: return LV_NULL;
    }
}

/* _names: first- and last-name ranks, the crossed comparison counted when it agrees better */
static int names(PyObject *fa, PyObject *la, PyObject *fb, PyObject *lb, int *first_out, int *last_out)
{
    int first = first_rank(fa, fb);
    if (first < 0)
        return -1;
    int last = last_rank(la, lb);
    *first_out = first;
    *last_out = last;
    if (first == R_EXACT && last == R_EXACT)
        return 0;
    if (fa && la && fb && lb) {
        int one = last_rank(fa, lb), two = last_rank(la, fb);
        if (one + two < first + last) {
            *first_out = one <= two ? one : two;
            *last_out = one <= two ? two : one;
        }
    } else if (last == R_NULL && first != R_NULL && first != R_EXACT) {
        PyObject *lone_first = la == NULL ? fa : fb;
        PyObject *other_last = la == NULL ? lb : la;
        if (other_last != NULL) {
            int moved = last_rank(lone_first, other_last);
            if (moved < first) {
                *first_out = R_NULL;
                *last_out = moved;
            }
        }
    }
    return 0;
}

/* -- dates of birth ------------------------------------------------------------------------------------- */

/* a canonical date: ten ASCII characters, digits but for '-' at 4 and 7 */
static int iso_shape(const Text *t)
{
    if (t->len != 10 || t->kind != PyUnicode_1BYTE_KIND)
        return 0;
    const unsigned char *s = t->data;
    for (int i = 0; i < 10; i++) {
        if (i == 4 || i == 7) {
            if (s[i] != '-')
                return 0;
        } else if (s[i] < '0' || s[i] > '9') {
            return 0;
        }
    }
    return 1;
}

static int number(const unsigned char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++)
        v = v * 10 + (s[i] - '0');
    return v;
}

/* days since 0001-01-01 of a valid date (as date.toordinal, less one); -1 for no date */
static long ordinal(const unsigned char *s)
{
    static const int days_before[] = {0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334};
    int y = number(s, 4), m = number(s + 5, 2), d = number(s + 8, 2);
    if (y < 1 || m < 1 || m > 12 || d < 1)
        return -1;
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    static const int in_month[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int most = in_month[m - 1] + (m == 2 && leap);
    if (d > most)
        return -1;
    long py = y - 1;
    return py * 365 + py / 4 - py / 100 + py / 400 + days_before[m - 1] + (m > 2 && leap) + d - 1;
}

static PyObject *dob_level(PyObject *a, PyObject *b)
{
    Text ta, tb;
    if (read_same(a, b, &ta, &tb))
        return LV_EXACT;
    if (!iso_shape(&ta) || !iso_shape(&tb))
        return NULL; /* the Python definition decides */
    const unsigned char *sa = ta.data, *sb = tb.data;
    int y_eq = memcmp(sa, sb, 4) == 0, m_eq = memcmp(sa + 5, sb + 5, 2) == 0,
        d_eq = memcmp(sa + 8, sb + 8, 2) == 0;
    if (y_eq && memcmp(sa + 5, sb + 8, 2) == 0 && memcmp(sa + 8, sb + 5, 2) == 0)
        return LV_SWAPPED;
    int differ = !y_eq + !m_eq + !d_eq;
    if (differ == 1)
        return LV_ONE_OFF;
    if (differ < 3) {
        unsigned char da[8], db[8];
        memcpy(da, sa, 4); memcpy(da + 4, sa + 5, 2); memcpy(da + 6, sa + 8, 2);
        memcpy(db, sb, 4); memcpy(db + 4, sb + 5, 2); memcpy(db + 6, sb + 8, 2);
        Text xa = {PyUnicode_1BYTE_KIND, da, 8}, xb = {PyUnicode_1BYTE_KIND, db, 8};
        if (osa_within_one(&xa, &xb))
            return LV_ONE_OFF;
    }
    if (y_eq && (memcmp(sa + 5, "01-01", 5) == 0 || memcmp(sb + 5, "01-01", 5) == 0))
        return LV_YEAR;
    long oa = ordinal(sa), ob = ordinal(sb);
    if (oa < 0 || ob < 0)
        return LV_DIFFERENT;
    long days = oa > ob ? oa - ob : ob - oa;
    if (days <= 31)
        return LV_MONTH;
    return days <= 3653 ? LV_DECADE : LV_DIFFERENT;
}

/* -- postcodes, addresses, towns ------------------------------------------------------------------------ */

static PyObject *postcode_level(PyObject *a, PyObject *b)
{
    Text ta, tb;
    if (read_same(a, b, &ta, &tb))
        return LV_EXACT;
    if ((ta.len < tb.len ? ta.len : tb.len) >= 4 && osa_within_one(&ta, &tb))
        return LV_TYPO;
    if (ta.len >= 3 && tb.len >= 3 && at(&ta, 0) == at(&tb, 0) && at(&ta, 1) == at(&tb, 1) &&
        at(&ta, 2) == at(&tb, 2))
        return LV_PREFIX;
    return LV_DIFFERENT;
}

typedef struct {
    Py_ssize_t start, len;
} Span;

/* the words holding a digit (str.split() and str.isdigit() semantics); -1: too many to hold */
static int house_numbers(const Text *t, Span *out)
{
    int n = 0;
    Py_ssize_t i = 0;
    while (i < t->len) {
        while (i < t->len && Py_UNICODE_ISSPACE(at(t, i)))
            i++;
        if (i >= t->len)
            break;
        Py_ssize_t start = i;
        int digit = 0;
        while (i < t->len && !Py_UNICODE_ISSPACE(at(t, i))) {
            if (Py_UNICODE_ISDIGIT(at(t, i)))
                digit = 1;
            i++;
        }
        if (digit) {
            if (n == MAX_TOKENS)
                return -1;
            out[n].start = start;
            out[n].len = i - start;
            n++;
        }
    }
    return n;
}

static int span_equal(const Text *a, Span x, const Text *b, Span y)
{
    if (x.len != y.len)
        return 0;
    for (Py_ssize_t i = 0; i < x.len; i++)
        if (at(a, x.start + i) != at(b, y.start + i))
            return 0;
    return 1;
}

/* every word of a's is among b's */
static int within(const Text *a, const Span *xs, int nx, const Text *b, const Span *ys, int ny)
{
    for (int i = 0; i < nx; i++) {
        int found = 0;
        for (int j = 0; j < ny && !found; j++)
            found = span_equal(a, xs[i], b, ys[j]);
        if (!found)
            return 0;
    }
    return 1;
}

/* a new reference, or NULL with an error set; *python set when the Python definition is to decide */
static PyObject *address_level(PyObject *a, PyObject *b, int *python)
{
    Text ta, tb;
    if (read_same(a, b, &ta, &tb))
        return Py_NewRef(LV_EXACT);
    Span xs[MAX_TOKENS], ys[MAX_TOKENS];
    int nx = house_numbers(&ta, xs), ny = house_numbers(&tb, ys);
    if (nx < 0 || ny < 0) {
        *python = 1;
        return NULL;
    }
    if (nx && ny && !within(&ta, xs, nx, &tb, ys, ny) && !within(&tb, ys, ny, &ta, xs, nx))
        return Py_NewRef(LV_DIFFERENT);
    PyObject *args[2] = {a, b};
    return PyObject_Vectorcall(PY_TOKEN_SET, args, 2, NULL);
}

static PyObject *city_level(PyObject *a, PyObject *b)
{
    Text ta, tb;
    if (read_same(a, b, &ta, &tb))
        return LV_EXACT;
    return jaro_winkler(&ta, &tb, 0.0) >= JW_HIGH ? LV_JW92 : LV_DIFFERENT;
}

/* -- compare -------------------------------------------------------------------------------------------- */

/* the six fields of a record: new references or NULL (None); 1: all as expected, 0: the Python
 * definition is to decide, -1: an error */
static int fields_of(PyObject *rec, PyObject **out)
{
    for (int i = 0; i < 6; i++)
        out[i] = NULL;
    int slots = RECORD_TYPE != NULL && Py_TYPE(rec) == RECORD_TYPE;
    for (int i = 0; i < 6; i++) {
        PyObject *v = slots ? *(PyObject **)((char *)rec + OFFSET[i]) : NULL;
        if (v != NULL)
            Py_INCREF(v);
        else if ((v = PyObject_GetAttr(rec, ATTR[i])) == NULL)  /* (a slot never set: its AttributeError) */
            return -1;
        if (v == Py_None) {
            Py_DECREF(v);
            continue;
        }
        out[i] = v;
        if (!PyUnicode_CheckExact(v) || PyUnicode_GET_LENGTH(v) == 0 || PyUnicode_GET_LENGTH(v) > MAX_LEN)
            return 0;
    }
    return 1;
}

/* the levels (borrowed) of fields read by ``fields_of``, all but the address' (lv[4], left NULL): 1, or 0 when
 * the Python definition is to decide, -1 on an error */
static int levels_but_address(PyObject **fa, PyObject **fb, PyObject **lv)
{
    int first, last;
    if (names(fa[0], fa[1], fb[0], fb[1], &first, &last) < 0)
        return -1;
    lv[0] = name_level(first);
    lv[1] = name_level(last);
    if (fa[2] == NULL || fb[2] == NULL)
        lv[2] = LV_NULL;
    else if ((lv[2] = dob_level(fa[2], fb[2])) == NULL)
        return 0;
    lv[3] = fa[4] == NULL || fb[4] == NULL ? LV_NULL : postcode_level(fa[4], fb[4]);
    lv[4] = NULL;
    lv[5] = fa[5] == NULL || fb[5] == NULL ? LV_NULL : city_level(fa[5], fb[5]);
    return 1;
}

/* the address' level of fields read by ``fields_of``: a new reference; NULL with *python set when the Python
 * definition is to decide, else NULL with an error */
static PyObject *address_of(PyObject **fa, PyObject **fb, int *python)
{
    if (fa[3] == NULL || fb[3] == NULL)
        return Py_NewRef(LV_NULL);
    return address_level(fa[3], fb[3], python);
}

/* the comparison vector: the five levels ``lv`` (borrowed) with ``address`` (stolen) in its place; NULL on an error */
static PyObject *levels_tuple(PyObject **lv, PyObject *address)
{
    PyObject *result = PyTuple_New(6);
    if (result == NULL) {
        Py_DECREF(address);
        return NULL;
    }
    for (int k = 0; k < 6; k++)
        PyTuple_SET_ITEM(result, k, k == 4 ? address : Py_NewRef(lv[k]));
    return result;
}

static void release_fields(PyObject **fa, PyObject **fb)
{
    for (int i = 0; i < 6; i++) {
        Py_XDECREF(fa[i]);
        Py_XDECREF(fb[i]);
    }
}

static PyObject *compare(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "compare takes two attribute records");
        return NULL;
    }
    if (PY_COMPARE == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_ccompare.configure was not called");
        return NULL;
    }
    PyObject *fa[6], *fb[6], *result = NULL, *lv[6];
    int ok = fields_of(args[0], fa);
    int ok_b = ok > 0 ? fields_of(args[1], fb) : (memset(fb, 0, sizeof fb), ok);
    if (ok < 0 || ok_b < 0)
        goto done;
    if (ok == 0 || ok_b == 0)
        goto python;
    int read = levels_but_address(fa, fb, lv);
    if (read < 0)
        goto done;
    if (read == 0)
        goto python;
    int python = 0;
    PyObject *address = address_of(fa, fb, &python);
    if (address == NULL) {
        if (python)
            goto python;
        goto done;
    }
    result = levels_tuple(lv, address);
    goto done;
python:
    result = PyObject_Vectorcall(PY_COMPARE, args, 2, NULL);
done:
    release_fields(fa, fb);
    return result;
}

/* the weight of ``level`` in ``weights`` (a dict level -> weight) added to *total; -1 on an error */
static int add_weight(PyObject *weights, PyObject *level, double *total)
{
    PyObject *w = PyObject_GetItem(weights, level);
    if (w == NULL)
        return -1;
    double x = PyFloat_AsDouble(w);
    Py_DECREF(w);
    if (x == -1.0 && PyErr_Occurred())
        return -1;
    *total += x;
    return 0;
}

/* the sum of the weights of ``levels`` (six of them), from ``vector`` (a tuple of six dicts level -> weight) where the
 * postcode's level is in ``agree_levels``, else from ``vector_apart``; summed from 0.0 in field order, as
 * MatchModel.total_of sums them; *agrees: whether the postcodes agree */
static int levels_total(PyObject *levels, PyObject *vector, PyObject *vector_apart, PyObject *agree_levels,
                        double *total, int *agrees)
{
    if (!PyTuple_CheckExact(levels) || PyTuple_GET_SIZE(levels) != 6) {
        PyErr_SetString(PyExc_TypeError, "compare did not give six levels");
        return -1;
    }
    *agrees = PySequence_Contains(agree_levels, PyTuple_GET_ITEM(levels, 3));
    if (*agrees < 0)
        return -1;
    PyObject *weights_ = *agrees ? vector : vector_apart;
    if (!PyTuple_Check(weights_) || PyTuple_GET_SIZE(weights_) != 6) {
        PyErr_SetString(PyExc_TypeError, "a weight vector is a tuple of six dicts");
        return -1;
    }
    double t = 0.0;
    for (int k = 0; k < 6; k++)
        if (add_weight(PyTuple_GET_ITEM(weights_, k), PyTuple_GET_ITEM(levels, k), &t) < 0)
            return -1;
    *total = t;
    return 0;
}

/* compare_total(a, b, vector, vector_apart, agrees): (compare(a, b), the sum of its levels' weights) */
static PyObject *compare_total(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "compare_total(a, b, vector, vector_apart, agrees)");
        return NULL;
    }
    PyObject *levels = compare(self, args, 2);
    if (levels == NULL)
        return NULL;
    double total;
    int agrees;
    PyObject *sum = NULL, *out = NULL;
    if (levels_total(levels, args[2], args[3], args[4], &total, &agrees) < 0 ||
            (sum = PyFloat_FromDouble(total)) == NULL || (out = PyTuple_New(2)) == NULL) {
        Py_DECREF(levels);
        Py_XDECREF(sum);
        return NULL;
    }
    PyTuple_SET_ITEM(out, 0, levels);
    PyTuple_SET_ITEM(out, 1, sum);
    return out;
}

/* -- scan: an event's record scored against the records its blocking keys find (fuzzy.candidates) ------------ */

/* a record's field ``i`` (ATTR order): a new reference, None included; NULL on an error */
static PyObject *field_of(PyObject *rec, int i)
{
    if (RECORD_TYPE != NULL && Py_TYPE(rec) == RECORD_TYPE) {
        PyObject *v = *(PyObject **)((char *)rec + OFFSET[i]);
        if (v != NULL)
            return Py_NewRef(v);
    }
    return PyObject_GetAttr(rec, ATTR[i]);
}

/* whether ``a`` == ``b`` (1), not (0), or an error (-1); the same object is equal, as Python's ``in`` says */
static inline int equal(PyObject *a, PyObject *b)
{
    return a == b ? 1 : PyObject_RichCompareBool(a, b, Py_EQ);
}

/* fuzzy.names_one_person(levels), of the first name's and the date of birth's levels */
static int names_one_person(PyObject *first, PyObject *dob, PyObject *same_first, PyObject *same_dob)
{
    int null = equal(first, LV_NULL);
    if (null < 0)
        return -1;
    return null ? PySequence_Contains(same_dob, dob) : PySequence_Contains(same_first, first);
}

/* -- the tables one scan fills as it goes: weights by level, the postcode levels that agree, frequency adjustments -- */

#define N_LEVELS 13
#define CODE_EXACT 1

/* the level constants (``configure``): a level's code is its place here */
static PyObject **const LEVEL_SLOTS[N_LEVELS] = {&LV_NULL, &LV_EXACT, &LV_NICKNAME, &LV_JW92, &LV_JW80, &LV_DIFFERENT,
                                                  &LV_SWAPPED, &LV_ONE_OFF, &LV_YEAR, &LV_MONTH, &LV_DECADE, &LV_TYPO,
                                                  &LV_PREFIX};

/* a level's code, or -1 for an object that is none of the constants (a level the Python definition gave) */
static inline int level_code(PyObject *level)
{
    for (int i = 0; i < N_LEVELS; i++)
        if (level == *LEVEL_SLOTS[i])
            return i;
    return -1;
}

#define MAX_FREQUENCY 6

typedef struct {
    PyObject *vectors[2];   /* the weight vectors: where the postcodes agree, and where they do not */
    PyObject *agree_levels; /* the postcode levels that agree */
    double weight[2][6][N_LEVELS];
    char weight_known[2][6][N_LEVELS];
    char agree[N_LEVELS];   /* 0: not looked up yet, 1: does not agree, 2: agrees */
    /* frequency adjustments: each field's name, its level's place, its place among the fields read; the
     * adjustment of an exact agreement on the event's own value, once looked up (where the postcodes agree, and
     * where not): the object, its truth and its value */
    Py_ssize_t nf;
    PyObject *freq_field[MAX_FREQUENCY];
    int freq_level[MAX_FREQUENCY], freq_attr[MAX_FREQUENCY];
    PyObject *bits[2][MAX_FREQUENCY];
    int bits_true[2][MAX_FREQUENCY];
    double bits_value[2][MAX_FREQUENCY];
    PyObject *tf, *adjust;
    int levels_first; /* whether the levels are read before the address is compared (no frequency field is it) */
} Tables;

static int tables_init(Tables *t, PyObject *const *spec, PyObject *tf, PyObject *adjust)
{
    memset(t, 0, sizeof *t);
    t->vectors[0] = spec[0];
    t->vectors[1] = spec[1];
    t->agree_levels = spec[2];
    t->tf = tf;
    t->adjust = adjust;
    for (int a = 0; a < 2; a++) {
        if (!PyTuple_Check(t->vectors[a]) || PyTuple_GET_SIZE(t->vectors[a]) != 6) {
            PyErr_SetString(PyExc_TypeError, "a weight vector is a tuple of six dicts");
            return -1;
        }
    }
    PyObject *freq = spec[8];
    t->levels_first = 1;
    t->nf = PyTuple_GET_SIZE(freq);
    if (t->nf > MAX_FREQUENCY) {
        PyErr_SetString(PyExc_ValueError, "at most six frequency fields");
        return -1;
    }
    for (Py_ssize_t k = 0; k < t->nf; k++) {
        PyObject *one = PyTuple_GET_ITEM(freq, k);
        if (!PyTuple_Check(one) || PyTuple_GET_SIZE(one) != 3) {
            PyErr_SetString(PyExc_TypeError, "a frequency field is (field, level index, field index)");
            return -1;
        }
        t->freq_field[k] = PyTuple_GET_ITEM(one, 0);
        long li = PyLong_AsLong(PyTuple_GET_ITEM(one, 1)), ai = PyLong_AsLong(PyTuple_GET_ITEM(one, 2));
        if (PyErr_Occurred())
            return -1;
        if (li < 0 || li > 5 || ai < 0 || ai > 5) {
            PyErr_SetString(PyExc_ValueError, "a frequency field's places are 0 to 5");
            return -1;
        }
        t->freq_level[k] = (int)li;
        t->freq_attr[k] = (int)ai;
        if (li == 4)
            t->levels_first = 0;
    }
    return 0;
}

static void tables_release(Tables *t)
{
    for (int a = 0; a < 2; a++)
        for (int k = 0; k < MAX_FREQUENCY; k++)
            Py_CLEAR(t->bits[a][k]);
}

/* the weight of field ``k``'s ``level`` (its ``code``, or -1) where the postcodes agree or not, into *out */
static int table_weight(Tables *t, int agrees, int k, PyObject *level, int code, double *out)
{
    if (code >= 0 && t->weight_known[agrees][k][code]) {
        *out = t->weight[agrees][k][code];
        return 0;
    }
    double x = 0.0;
    if (add_weight(PyTuple_GET_ITEM(t->vectors[agrees ? 0 : 1], k), level, &x) < 0)
        return -1;
    if (code >= 0) {
        t->weight[agrees][k][code] = x;
        t->weight_known[agrees][k][code] = 1;
    }
    *out = x;
    return 0;
}

/* whether the postcode ``level`` (its ``code``, or -1) agrees (1), not (0), or an error (-1) */
static int table_agrees(Tables *t, PyObject *level, int code)
{
    if (code >= 0 && t->agree[code])
        return t->agree[code] - 1;
    int agrees = PySequence_Contains(t->agree_levels, level);
    if (agrees >= 0 && code >= 0)
        t->agree[code] = (char)(agrees + 1);
    return agrees;
}

/* the adjustment of an exact agreement on ``value`` (the event's own) in frequency field ``k``: looked up in the
 * cache ``tf`` (or computed by ``adjust`` and kept there) the first time, as ``fuzzy.frequency_deltas`` does */
static int table_bits(Tables *t, int agrees, Py_ssize_t k, PyObject *value)
{
    if (t->bits[agrees][k] != NULL)
        return 0;
    PyObject *f = t->freq_field[k], *truth_of = agrees ? Py_True : Py_False;
    PyObject *key = PyTuple_Pack(3, f, value, truth_of);
    if (key == NULL)
        return -1;
    PyObject *bits = PyDict_GetItemWithError(t->tf, key);
    if (bits != NULL && bits != Py_None) {
        Py_INCREF(bits);
    } else if (PyErr_Occurred()) {
        Py_DECREF(key);
        return -1;
    } else {
        PyObject *call[3] = {f, value, truth_of};
        bits = PyObject_Vectorcall(t->adjust, call, 3, NULL);
        if (bits == NULL || PyDict_SetItem(t->tf, key, bits) < 0) {
            Py_XDECREF(bits);
            Py_DECREF(key);
            return -1;
        }
    }
    Py_DECREF(key);
    int truth = PyObject_IsTrue(bits);
    double x = truth > 0 ? PyFloat_AsDouble(bits) : 0.0;
    if (truth < 0 || (x == -1.0 && PyErr_Occurred())) {
        Py_DECREF(bits);
        return -1;
    }
    t->bits[agrees][k] = bits;
    t->bits_true[agrees][k] = truth;
    t->bits_value[agrees][k] = x;
    return 0;
}

/* how far a bound summed in another order may fall below the weight it bounds (rounding; weights are a few dozen
 * bits at most) */
#define BOUND_MARGIN 1e-6

/* whether ``total`` reaches ``review`` and beats profile p's best so far in ``best`` (1), not (0), or an error (-1) */
static int beats(PyObject *best, PyObject *p, double total, double review)
{
    if (!(total >= review))
        return 0;
    PyObject *cur = PyDict_GetItemWithError(best, p);
    if (cur == NULL)
        return PyErr_Occurred() ? -1 : 1;
    return total > PyFloat_AS_DOUBLE(PyTuple_GET_ITEM(cur, 0));
}

static int keep(PyObject *best, PyObject *p, PyObject *n, double total, PyObject *levels, PyObject *deltas)
{
    PyObject *kept = Py_BuildValue("(dOOO)", total, n, levels, deltas != NULL ? deltas : Py_None);
    if (kept == NULL || PyDict_SetItem(best, p, kept) < 0) {
        Py_XDECREF(kept);
        return -1;
    }
    Py_DECREF(kept);
    return 0;
}

/* which frequency fields agree exactly on the event's own value (``fuzzy.frequency_deltas``: the level exact and
 * the values equal), into ``used`` (a field whose adjustment is 0 is not used), their adjustments read into the
 * tables ``t``; ``lv``: the levels (the address' not read), ``fa``, ``fb``: the records' fields (NULL for None) */
static int exact_agreements(Tables *t, PyObject *const *lv, PyObject **fa, PyObject **fb, int agrees, int *used)
{
    for (Py_ssize_t j = 0; j < t->nf; j++) {
        used[j] = 0;
        int exact = equal(lv[t->freq_level[j]], LV_EXACT);
        if (exact < 0)
            return -1;
        PyObject *value = fa[t->freq_attr[j]], *theirs = fb[t->freq_attr[j]];
        if (!exact || value == NULL || theirs == NULL)
            continue;
        int differ = value == theirs ? 0 : PyObject_RichCompareBool(value, theirs, Py_NE);
        if (differ < 0)
            return -1;
        if (differ)
            continue;
        if (table_bits(t, agrees, j, value) < 0)
            return -1;
        used[j] = t->bits_true[agrees][j];
    }
    return 0;
}

/* the record's six fields as ``fields_of`` gives them (NULL for None), read whatever they hold; -1 on an error */
static int any_fields_of(PyObject *rec, PyObject **out)
{
    for (int i = 0; i < 6; i++) {
        PyObject *v = field_of(rec, i);
        if (v == NULL)
            return -1;
        if (v == Py_None)
            Py_DECREF(v);
        else
            out[i] = v;
    }
    return 0;
}

/* one candidate record ``other`` of node ``n`` in profile ``p``: scored as fuzzy.score scores it, and kept in
 * ``best`` if it reaches ``review`` and is p's best. A record whose weight cannot reach ``review`` whatever its
 * address level (the other fields' weights and frequency adjustments, with the address' best weight, ``addr_max``:
 * where the postcodes agree, and where they do not) is left before its addresses are compared. Weights and
 * adjustments are read from the scan's tables ``t``; the comparison vector and the adjustments' dict are made only
 * for a record kept. Records this code does not compare are compared by the Python definition, and scored alike. */
static int consider(PyObject *rec, PyObject *rec_dob, PyObject *other, PyObject *n, PyObject *p,
                    PyObject *const *spec, double link, double cap, double review, const double *addr_max,
                    Tables *t, PyObject *dob_compatible, PyObject *best)
{
    if (dob_compatible != Py_None) {  /* (``hard_conflict``, its cheap cases first) */
        PyObject *dob = field_of(other, 2);
        if (dob == NULL)
            return -1;
        int skip = 0;
        if (dob != Py_None && rec_dob != Py_None) {
            int differ = dob == rec_dob ? 0 : PyObject_RichCompareBool(dob, rec_dob, Py_NE);
            if (differ > 0) {
                PyObject *call[2] = {rec_dob, dob};
                PyObject *ok = PyObject_Vectorcall(dob_compatible, call, 2, NULL);
                int truth = ok == NULL ? -1 : PyObject_IsTrue(ok);
                Py_XDECREF(ok);
                skip = truth < 0 ? -1 : !truth;
            } else {
                skip = differ;  /* (-1: an error) */
            }
        }
        Py_DECREF(dob);
        if (skip)
            return skip < 0 ? -1 : 0;
    }
    PyObject *fa[6], *fb[6], *lv[6], *levels = NULL, *address = NULL, *deltas = NULL;
    int result = -1, agrees = 0, used[MAX_FREQUENCY] = {0};
    double w[6];
    int ok = fields_of(rec, fa);
    int ok_b = ok > 0 ? fields_of(other, fb) : (memset(fb, 0, sizeof fb), ok);
    if (ok < 0 || ok_b < 0)
        goto done;
    /* (0: the Python definition compares) */
    int read = ok && ok_b && t->levels_first ? levels_but_address(fa, fb, lv) : 0;
    if (read < 0)
        goto done;
    if (read > 0) {
        if ((agrees = table_agrees(t, lv[3], level_code(lv[3]))) < 0)
            goto done;
        double bound = 0.0;
        for (int k = 0; k < 6; k++) {
            if (k == 4)
                continue;
            if (table_weight(t, agrees, k, lv[k], level_code(lv[k]), &w[k]) < 0)
                goto done;
            bound += w[k];
        }
        bound += addr_max[agrees ? 0 : 1];
        if (t->tf != Py_None && exact_agreements(t, lv, fa, fb, agrees, used) < 0)
            goto done;
        for (Py_ssize_t j = 0; j < t->nf; j++)
            if (used[j])
                bound += t->bits_value[agrees][j];
        if (bound + BOUND_MARGIN < review) {
            result = 0;
            goto done;
        }
        int python = 0;
        address = address_of(fa, fb, &python);
        if (address == NULL && !python)
            goto done;
        if (address == NULL)
            read = 0;  /* (the Python definition compares the addresses: it compares them all) */
        else if (table_weight(t, agrees, 4, address, level_code(address), &w[4]) < 0)
            goto done;
        else
            lv[4] = address;
    }
    if (read == 0) {
        PyObject *pair[2] = {rec, other};
        if ((levels = PyObject_Vectorcall(PY_COMPARE, pair, 2, NULL)) == NULL)
            goto done;
        if (!PyTuple_CheckExact(levels) || PyTuple_GET_SIZE(levels) != 6) {
            PyErr_SetString(PyExc_TypeError, "compare did not give six levels");
            goto done;
        }
        for (int k = 0; k < 6; k++)
            lv[k] = PyTuple_GET_ITEM(levels, k);
        if ((agrees = table_agrees(t, lv[3], level_code(lv[3]))) < 0)
            goto done;
        for (int k = 0; k < 6; k++)
            if (table_weight(t, agrees, k, lv[k], level_code(lv[k]), &w[k]) < 0)
                goto done;
        if (t->tf != Py_None) {  /* (the fields as the definition read them: any object) */
            release_fields(fa, fb);
            memset(fa, 0, sizeof fa);
            memset(fb, 0, sizeof fb);
            if (any_fields_of(rec, fa) < 0 || any_fields_of(other, fb) < 0 ||
                    exact_agreements(t, lv, fa, fb, agrees, used) < 0)
                goto done;
        }
    }
    double total = 0.0;  /* (in field order, then the adjustments in theirs, as fuzzy.score sums them) */
    for (int k = 0; k < 6; k++)
        total += w[k];
    for (Py_ssize_t j = 0; j < t->nf; j++)
        if (used[j])
            total += t->bits_value[agrees][j];
    if (total >= link && spec[5] == Py_True) {
        int one = names_one_person(lv[0], lv[2], spec[6], spec[7]);
        if (one < 0)
            goto done;
        if (!one)
            total = cap;  /* a person decides: twins, or a household, agree on everything else */
    }
    int better = beats(best, p, total, review);
    if (better < 0)
        goto done;
    if (better) {
        if (levels == NULL) {
            levels = levels_tuple(lv, address);
            address = NULL;  /* (taken by the tuple) */
            if (levels == NULL)
                goto done;
        }
        for (Py_ssize_t j = 0; j < t->nf; j++) {
            if (!used[j])
                continue;
            if ((deltas == NULL && (deltas = PyDict_New()) == NULL) ||
                    PyDict_SetItem(deltas, t->freq_field[j], t->bits[agrees][j]) < 0)
                goto done;
        }
        if (keep(best, p, n, total, levels, deltas) < 0)
            goto done;
    }
    result = 0;
done:
    Py_XDECREF(levels);
    Py_XDECREF(address);
    Py_XDECREF(deltas);
    release_fields(fa, fb);
    return result;
}

/* the best weight of the address' levels in a weight vector (a tuple of six dicts level -> weight; +inf for none) */
static int address_max(PyObject *vector, double *out)
{
    if (!PyTuple_Check(vector) || PyTuple_GET_SIZE(vector) != 6 || !PyDict_Check(PyTuple_GET_ITEM(vector, 4))) {
        PyErr_SetString(PyExc_TypeError, "a weight vector is a tuple of six dicts");
        return -1;
    }
    PyObject *level, *w;
    Py_ssize_t pos = 0;
    double most = -Py_HUGE_VAL;
    while (PyDict_Next(PyTuple_GET_ITEM(vector, 4), &pos, &level, &w)) {
        double x = PyFloat_AsDouble(w);
        if (x == -1.0 && PyErr_Occurred())
            return -1;
        if (x > most)
            most = x;
    }
    *out = pos == 0 ? Py_HUGE_VAL : most;
    return 0;
}

/* scan(rec, keys, blocks, node_profile, records, shared, pid, spec, tf, adjust, dob_compatible): fuzzy.candidates
 * (its Python definition, ``candidates_python``, says what each argument is). */
static PyObject *scan(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 11 || !PyDict_CheckExact(args[2]) || !PyList_CheckExact(args[3]) || !PyDict_CheckExact(args[4]) ||
            !PyAnySet_Check(args[5]) || !PyTuple_CheckExact(args[7]) || PyTuple_GET_SIZE(args[7]) != 10 ||
            !PyTuple_CheckExact(PyTuple_GET_ITEM(args[7], 8)) || (args[8] != Py_None && !PyDict_CheckExact(args[8]))) {
        PyErr_SetString(PyExc_TypeError,
                        "scan(rec, keys, blocks: dict, node_profile: list, records: dict, shared: set, pid, "
                        "spec: 10-tuple, tf: dict | None, adjust, dob_compatible)");
        return NULL;
    }
    if (PY_COMPARE == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_ccompare.configure was not called");
        return NULL;
    }
    PyObject *rec = args[0], *blocks = args[2], *node_profile = args[3], *records = args[4], *shared = args[5];
    PyObject *pid = args[6], *const *spec = &PyTuple_GET_ITEM(args[7], 0), *tf = args[8], *adjust = args[9];
    PyObject *dob_compatible = args[10];
    /* (the link threshold, just under it, and the review threshold) */
    double link = PyFloat_AsDouble(spec[3]), cap = PyFloat_AsDouble(spec[4]), review = PyFloat_AsDouble(spec[9]);
    double addr_max[2];
    if (PyErr_Occurred() || address_max(spec[0], &addr_max[0]) < 0 || address_max(spec[1], &addr_max[1]) < 0)
        return NULL;
    Tables t;
    if (tables_init(&t, spec, tf, adjust) < 0)
        return NULL;
    PyObject *keys = PySequence_Fast(args[1], "keys are a sequence");
    if (keys == NULL)
        return NULL;
    PyObject *best = NULL, *visited = NULL, *rec_dob = NULL;
    if ((best = PyDict_New()) == NULL || (visited = PySet_New(NULL)) == NULL || (rec_dob = field_of(rec, 2)) == NULL)
        goto fail;
    for (Py_ssize_t k = 0; k < PySequence_Fast_GET_SIZE(keys); k++) {
        PyObject *filed = PyDict_GetItemWithError(blocks, PySequence_Fast_GET_ITEM(keys, k));
        if (filed == NULL) {
            if (PyErr_Occurred())
                goto fail;
            continue;
        }
        PyObject *nodes = PySequence_Fast(filed, "a block is a sequence of nodes");
        if (nodes == NULL)
            goto fail;
        for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(nodes); i++) {
            PyObject *n = PySequence_Fast_GET_ITEM(nodes, i);
            int seen = PySet_Contains(visited, n);
            if (seen != 0 || PySet_Add(visited, n) < 0) {
                if (seen > 0)
                    continue;
                Py_DECREF(nodes);
                goto fail;
            }
            PyObject *p = PyObject_GetItem(node_profile, n);
            if (p == NULL) {
                Py_DECREF(nodes);
                goto fail;
            }
            int skip = p == Py_None ? 1 : equal(p, pid);
            if (skip == 0)
                skip = PySet_Contains(shared, n);
            PyObject *held = skip == 0 ? PyDict_GetItemWithError(records, n) : NULL;
            if (skip < 0 || (held == NULL && PyErr_Occurred())) {
                Py_DECREF(p);
                Py_DECREF(nodes);
                goto fail;
            }
            if (held == NULL) {
                Py_DECREF(p);
                continue;
            }
            PyObject *others = PySequence_Fast(held, "a node's records are a sequence");
            if (others == NULL) {
                Py_DECREF(p);
                Py_DECREF(nodes);
                goto fail;
            }
            for (Py_ssize_t j = 0; j < PySequence_Fast_GET_SIZE(others); j++) {
                /* (held: what ``consider`` calls may take it out of the node's list, as the loop variable of
                 * the definition holds it) */
                PyObject *other = Py_NewRef(PySequence_Fast_GET_ITEM(others, j));
                int failed = consider(rec, rec_dob, other, n, p, spec, link, cap, review, addr_max, &t, dob_compatible,
                                      best) < 0;
                Py_DECREF(other);
                if (failed) {
                    Py_DECREF(others);
                    Py_DECREF(p);
                    Py_DECREF(nodes);
                    goto fail;
                }
            }
            Py_DECREF(others);
            Py_DECREF(p);
        }
        Py_DECREF(nodes);
    }
    Py_DECREF(keys);
    Py_DECREF(visited);
    Py_DECREF(rec_dob);
    tables_release(&t);
    return best;
fail:
    tables_release(&t);
    Py_DECREF(keys);
    Py_XDECREF(best);
    Py_XDECREF(visited);
    Py_XDECREF(rec_dob);
    return NULL;
}

/* date_of_birth(a, b): compare_date_of_birth's level of two dates (None: unknown) */
static PyObject *date_of_birth(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || PY_DOB == NULL) {
        PyErr_SetString(PyExc_TypeError, "date_of_birth(a, b), after configure");
        return NULL;
    }
    PyObject *a = args[0], *b = args[1];
    if (a == Py_None || b == Py_None)
        return Py_NewRef(LV_NULL);
    if (PyUnicode_CheckExact(a) && PyUnicode_CheckExact(b) && PyUnicode_GET_LENGTH(a) <= MAX_LEN &&
            PyUnicode_GET_LENGTH(b) <= MAX_LEN) {
        PyObject *level = dob_level(a, b);
        if (level != NULL)
            return Py_NewRef(level);
    }
    return PyObject_Vectorcall(PY_DOB, args, 2, NULL);
}

/* compare_codes(records, codes, n, compared): for each pair code i * n + j in the list ``codes`` not yet a key
 * of the dict ``compared``, compared[code] = compare(records[i], records[j]). */
static PyObject *compare_codes(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4 || !PyList_CheckExact(args[0]) || !PyList_CheckExact(args[1]) || !PyDict_CheckExact(args[3])) {
        PyErr_SetString(PyExc_TypeError, "compare_codes(list, list, n, dict)");
        return NULL;
    }
    PyObject *records = args[0], *codes = args[1], *compared = args[3];
    long long n = PyLong_AsLongLong(args[2]);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    if (n != PyList_GET_SIZE(records) || n > 3000000000LL) {
        PyErr_SetString(PyExc_ValueError, "n is not the number of records (at most 3 billion)");
        return NULL;
    }
    for (Py_ssize_t k = 0; k < PyList_GET_SIZE(codes); k++) {
        PyObject *code = PyList_GET_ITEM(codes, k);
        int known = PyDict_Contains(compared, code);
        if (known < 0)
            return NULL;
        if (known)
            continue;
        long long c = PyLong_AsLongLong(code);
        if (c == -1 && PyErr_Occurred())
            return NULL;
        if (c < 0 || c >= n * n) {
            PyErr_SetString(PyExc_ValueError, "a pair code out of range");
            return NULL;
        }
        PyObject *pair[2] = {PyList_GET_ITEM(records, c / n), PyList_GET_ITEM(records, c % n)};
        Py_INCREF(pair[0]);
        Py_INCREF(pair[1]);
        PyObject *levels = compare(self, pair, 2);
        Py_DECREF(pair[0]);
        Py_DECREF(pair[1]);
        if (levels == NULL)
            return NULL;
        int failed = PyDict_SetItem(compared, code, levels);
        Py_DECREF(levels);
        if (failed < 0)
            return NULL;
    }
    Py_RETURN_NONE;
}

/* -- seeded random draws, as random.Random.randrange makes them ------------------------------------------
 *
 * CPython draws randrange(n) as getrandbits(k), k = n.bit_length(), again until the number is below n; and
 * getrandbits(k) takes one 32-bit word of the Mersenne Twister for k <= 32 (its top k bits) and, for more,
 * words from the least significant on (the last shifted right to k bits). Here the words are read in bulk,
 * from getrandbits(32 * DRAW_CHUNK) as little-endian bytes, and each draw takes them in that order: the
 * generator is spent further than the Python loop would have spent it, so a caller uses it for these draws
 * alone. ``resolver.matching.sampling`` checks on import that the draws are the interpreter's own. */

#define DRAW_CHUNK 1024

typedef struct {
    PyObject *getrandbits;
    uint32_t words[DRAW_CHUNK];
    Py_ssize_t len, pos;
    long long taken; /* words drawn so far */
} Words;

static int refill(Words *w)
{
    PyObject *bits = PyObject_CallFunction(w->getrandbits, "n", (Py_ssize_t)32 * DRAW_CHUNK);
    if (bits == NULL)
        return -1;
    PyObject *raw = PyLong_Check(bits) ? PyObject_CallMethod(bits, "to_bytes", "ns", (Py_ssize_t)4 * DRAW_CHUNK,
                                                             "little")
                                       : NULL;
    Py_DECREF(bits);
    if (raw == NULL || !PyBytes_Check(raw) || PyBytes_GET_SIZE(raw) != 4 * DRAW_CHUNK) {
        Py_XDECREF(raw);
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "getrandbits(bits) gave no number of that many bits");
        return -1;
    }
    const unsigned char *b = (const unsigned char *)PyBytes_AS_STRING(raw);
    for (Py_ssize_t m = 0; m < DRAW_CHUNK; m++)
        w->words[m] = (uint32_t)b[4 * m] | (uint32_t)b[4 * m + 1] << 8 | (uint32_t)b[4 * m + 2] << 16
                      | (uint32_t)b[4 * m + 3] << 24;
    Py_DECREF(raw);
    w->len = DRAW_CHUNK;
    w->pos = 0;
    return 0;
}

static inline int next_word(Words *w, uint32_t *out)
{
    if (w->pos == w->len && refill(w) < 0)
        return -1;
    *out = w->words[w->pos++];
    w->taken++;
    return 0;
}

/* randrange(n), 1 <= n < 2**63 */
static int below(Words *w, unsigned long long n, unsigned long long *out)
{
    int k = 0;
    for (unsigned long long m = n; m; m >>= 1)
        k++;
    for (;;) {
        uint32_t low, high;
        unsigned long long r;
        if (next_word(w, &low) < 0)
            return -1;
        if (k <= 32) {
            r = low >> (32 - k);
        } else {
            if (next_word(w, &high) < 0)
                return -1;
            if (k < 64)
                high >>= (64 - k);
            r = (unsigned long long)low | (unsigned long long)high << 32;
        }
        if (r < n) {
            *out = r;
            return 0;
        }
    }
}

static Words *words_of(PyObject *getrandbits)
{
    if (!PyCallable_Check(getrandbits)) {
        PyErr_SetString(PyExc_TypeError, "getrandbits is a random.Random's getrandbits");
        return NULL;
    }
    Words *w = PyMem_Malloc(sizeof *w);
    if (w == NULL)
        return (Words *)PyErr_NoMemory();
    w->getrandbits = getrandbits;
    w->len = w->pos = 0;
    w->taken = 0;
    return w;
}

/* count 64-bit integers, as bytes in the machine's order (array('q') reads them) */
static PyObject *int64s(Py_ssize_t count, char **data)
{
    if (count < 0 || count > PY_SSIZE_T_MAX / 8) {
        PyErr_SetString(PyExc_ValueError, "count out of range");
        return NULL;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, count * 8);
    if (out != NULL)
        *data = PyBytes_AS_STRING(out);
    return out;
}

static inline void put64(char *data, Py_ssize_t k, long long v) { memcpy(data + 8 * k, &v, 8); }

/* n (from low to high) and count from args[at] and args[at + 1]; -1 with an error set if either is wrong */
static int sizes_of(PyObject *const *args, Py_ssize_t at, long long low, long long high, const char *range,
                    long long *n, Py_ssize_t *count)
{
    *n = PyLong_AsLongLong(args[at]);
    if (*n == -1 && PyErr_Occurred())
        return -1;
    *count = PyNumber_AsSsize_t(args[at + 1], PyExc_OverflowError);
    if (*count == -1 && PyErr_Occurred())
        return -1;
    if (*n < low || *n > high) {
        PyErr_SetString(PyExc_ValueError, range);
        return -1;
    }
    return 0;
}

/* the bytes of count 64-bit integers to fill, and the words of getrandbits; NULL (an error set) if either fails */
static PyObject *draws_of(PyObject *getrandbits, Py_ssize_t count, char **data, Words **w)
{
    PyObject *out = int64s(count, data);
    *w = out != NULL ? words_of(getrandbits) : NULL;
    if (*w == NULL)
        Py_CLEAR(out);
    return out;
}

/* two different numbers below size (at least 2): i = randrange(size), then j = randrange(size - 1), j + 1 if
 * j >= i */
static int two_below(Words *w, unsigned long long size, unsigned long long *i, unsigned long long *j)
{
    if (below(w, size, i) < 0 || below(w, size - 1, j) < 0)
        return -1;
    if (*j >= *i)
        (*j)++;
    return 0;
}

/* draws(getrandbits, n, count): count draws of randrange(n), as bytes of 64-bit integers; and random_pairs(
 * getrandbits, n, count): count pairs of two different records of n, as the codes i * n + j, drawn by two_below
 * (``sampling.random_pair_codes_python``) */
static PyObject *draws_or_pairs(PyObject *const *args, Py_ssize_t nargs, int pairs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, pairs ? "random_pairs(getrandbits, n, count)" : "draws(getrandbits, n, count)");
        return NULL;
    }
    long long n;
    Py_ssize_t count;
    if (sizes_of(args, 1, pairs ? 2 : 1, pairs ? 3000000000LL : LLONG_MAX,
                 pairs ? "n is from 2 to 3 billion" : "n is at least 1 (and below 2**63)", &n, &count) < 0)
        return NULL;
    char *data;
    Words *w;
    PyObject *out = draws_of(args[0], count, &data, &w);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t k = 0; k < count; k++) {
        unsigned long long i, j = 0;
        if ((pairs ? two_below(w, (unsigned long long)n, &i, &j) : below(w, (unsigned long long)n, &i)) < 0) {
            Py_CLEAR(out);
            break;
        }
        put64(data, k, (long long)(pairs ? i * (unsigned long long)n + j : i));
    }
    PyMem_Free(w);
    return out;
}

static PyObject *draws(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    return draws_or_pairs(args, nargs, 0);
}

static PyObject *random_pairs(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    return draws_or_pairs(args, nargs, 1);
}

/* group_pairs(getrandbits, members, ends, n, count): count pairs of two different records of one group, as the
 * codes a * n + b. The groups are members[ends[g - 1]:ends[g]] (buffers of 64-bit integers, record numbers below
 * n; each group of at least 2); each pair is drawn as ``sampling.group_pair_codes_python`` draws it: a pair
 * number below the groups' total, its group by bisection of the running totals, then i = randrange(size),
 * j = randrange(size - 1), j + 1 if j >= i. */
static PyObject *group_pairs(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "group_pairs(getrandbits, members, ends, n, count)");
        return NULL;
    }
    long long n;
    Py_ssize_t count;
    if (sizes_of(args, 3, 2, 3000000000LL, "n is from 2 to 3 billion", &n, &count) < 0)
        return NULL;
    Py_buffer mv, ev;
    if (PyObject_GetBuffer(args[1], &mv, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0)
        return NULL;
    if (PyObject_GetBuffer(args[2], &ev, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0) {
        PyBuffer_Release(&mv);
        return NULL;
    }
    /* (copied: the draws call getrandbits, Python code that could change the arrays while they are read) */
    int typed = mv.itemsize == 8 && ev.itemsize == 8 && strcmp(mv.format, "q") == 0 && strcmp(ev.format, "q") == 0;
    Py_ssize_t groups = ev.len / 8, total_members = mv.len / 8;
    long long *members = typed ? PyMem_Malloc(8 * (size_t)(total_members > 0 ? total_members : 1)) : NULL;
    long long *ends = typed ? PyMem_Malloc(8 * (size_t)(groups > 0 ? groups : 1)) : NULL;
    if (members != NULL && ends != NULL) {
        memcpy(members, mv.buf, 8 * (size_t)total_members);
        memcpy(ends, ev.buf, 8 * (size_t)groups);
    }
    PyBuffer_Release(&mv);
    PyBuffer_Release(&ev);
    PyObject *out = NULL;
    unsigned long long *running = NULL;
    Words *w = NULL;
    if (!typed) {
        PyErr_SetString(PyExc_TypeError, "members and ends are array('q')");
        goto done;
    }
    if (members == NULL || ends == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if (groups < 1) {
        PyErr_SetString(PyExc_ValueError, "no group to draw from");
        goto done;
    }
    running = PyMem_Malloc(sizeof *running * (size_t)groups);
    if (running == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    unsigned long long total = 0;
    for (Py_ssize_t g = 0; g < groups; g++) {
        long long start = g ? ends[g - 1] : 0, size = ends[g] - start;
        if (size < 2 || ends[g] > total_members) {
            PyErr_SetString(PyExc_ValueError, "a group has fewer than 2 records, or ends past the members");
            goto done;
        }
        unsigned long long pairs = (unsigned long long)size * (unsigned long long)(size - 1) / 2;
        if (pairs > (1ULL << 62) || total > (1ULL << 62) - pairs) {
            PyErr_SetString(PyExc_ValueError, "more pairs than 2**62");
            goto done;
        }
        total += pairs;
        running[g] = total;
    }
    for (Py_ssize_t k = 0; k < total_members; k++)
        if (members[k] < 0 || members[k] >= n) {
            PyErr_SetString(PyExc_ValueError, "a record number out of range");
            goto done;
        }
    char *data;
    out = draws_of(args[0], count, &data, &w);
    if (out == NULL)
        goto done;
    for (Py_ssize_t k = 0; k < count; k++) {
        unsigned long long r, i, j;
        if (below(w, total, &r) < 0) {
            Py_CLEAR(out);
            goto done;
        }
        Py_ssize_t lo = 0, hi = groups;  /* the first group whose running total is above r (bisect_right) */
        while (lo < hi) {
            Py_ssize_t mid = lo + (hi - lo) / 2;
            if (r < running[mid])
                hi = mid;
            else
                lo = mid + 1;
        }
        long long start = lo ? ends[lo - 1] : 0;
        unsigned long long size = (unsigned long long)(ends[lo] - start);
        if (two_below(w, size, &i, &j) < 0) {
            Py_CLEAR(out);
            goto done;
        }
        put64(data, k, members[start + (long long)i] * n + members[start + (long long)j]);
    }
done:
    PyMem_Free(w);
    PyMem_Free(running);
    PyMem_Free(members);
    PyMem_Free(ends);
    return out;
}

/* -- sorted sets of pair codes ------------------------------------------------------------------------- */

static int cmp_codes(const void *x, const void *y)
{
    long long a = *(const long long *)x, b = *(const long long *)y;
    return (a > b) - (a < b);
}

/* codes[0..count) as a list of ints */
static PyObject *int_list(const long long *codes, Py_ssize_t count)
{
    PyObject *out = PyList_New(count);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t k = 0; k < count; k++) {
        PyObject *code = PyLong_FromLongLong(codes[k]);
        if (code == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, k, code);
    }
    return out;
}

/* codes[0..count) sorted, without repeats, as a list of ints (frees codes) */
static PyObject *sorted_list(long long *codes, Py_ssize_t count)
{
    qsort(codes, (size_t)count, sizeof *codes, cmp_codes);
    Py_ssize_t unique = 0;
    for (Py_ssize_t k = 0; k < count; k++)
        if (k == 0 || codes[k] != codes[unique - 1])
            codes[unique++] = codes[k];
    PyObject *out = int_list(codes, unique);
    PyMem_Free(codes);
    return out;
}

/* block_pair_codes(blocks, n): the codes i * n + j of every pair i, j (i before j) of each list of record
 * numbers in ``blocks``, sorted, without repeats. */
static PyObject *block_pair_codes(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyList_CheckExact(args[0])) {
        PyErr_SetString(PyExc_TypeError, "block_pair_codes(list of lists, n)");
        return NULL;
    }
    long long n = PyLong_AsLongLong(args[1]);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    if (n < 0 || n > 3000000000LL) {
        PyErr_SetString(PyExc_ValueError, "n out of range");
        return NULL;
    }
    PyObject *blocks = args[0];
    Py_ssize_t total = 0;
    for (Py_ssize_t b = 0; b < PyList_GET_SIZE(blocks); b++) {
        PyObject *block = PyList_GET_ITEM(blocks, b);
        if (!PyList_CheckExact(block)) {
            PyErr_SetString(PyExc_TypeError, "a block is a list of record numbers");
            return NULL;
        }
        Py_ssize_t size = PyList_GET_SIZE(block);
        total += size * (size - 1) / 2;
    }
    long long *codes = PyMem_Malloc(sizeof(long long) * (size_t)(total > 0 ? total : 1));
    if (codes == NULL)
        return PyErr_NoMemory();
    Py_ssize_t count = 0, most = 0;
    for (Py_ssize_t b = 0; b < PyList_GET_SIZE(blocks); b++)
        if (PyList_GET_SIZE(PyList_GET_ITEM(blocks, b)) > most)
            most = PyList_GET_SIZE(PyList_GET_ITEM(blocks, b));
    long long *ids = PyMem_Malloc(sizeof(long long) * (size_t)(most > 0 ? most : 1));
    if (ids == NULL) {
        PyMem_Free(codes);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t b = 0; b < PyList_GET_SIZE(blocks); b++) {
        PyObject *block = PyList_GET_ITEM(blocks, b);
        Py_ssize_t size = PyList_GET_SIZE(block);
        for (Py_ssize_t i = 0; i < size; i++) {
            ids[i] = PyLong_AsLongLong(PyList_GET_ITEM(block, i));
            if ((ids[i] == -1 && PyErr_Occurred()) || ids[i] < 0 || ids[i] >= n)
                goto bad;
        }
        for (Py_ssize_t i = 0; i < size; i++)
            for (Py_ssize_t j = i + 1; j < size; j++)
                codes[count++] = ids[i] * n + ids[j];
    }
    PyMem_Free(ids);
    return sorted_list(codes, count);
bad:
    PyMem_Free(ids);
    PyMem_Free(codes);
    if (!PyErr_Occurred())
        PyErr_SetString(PyExc_ValueError, "a record number out of range");
    return NULL;
}

/* the ints of ``list`` (each at least 0 and below 2**63) into out[0..len(list)); -1 with an error set if one is not */
static int read_codes(PyObject *list, long long *out)
{
    for (Py_ssize_t k = 0; k < PyList_GET_SIZE(list); k++) {
        out[k] = PyLong_AsLongLong(PyList_GET_ITEM(list, k));
        if ((out[k] == -1 && PyErr_Occurred()) || out[k] < 0) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "a negative code");
            return -1;
        }
    }
    return 0;
}

/* union_codes(lists): the ints of every list (each at least 0 and below 2**63), sorted, without repeats. */
static PyObject *union_codes(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 1 || !PyList_CheckExact(args[0])) {
        PyErr_SetString(PyExc_TypeError, "union_codes(list of lists)");
        return NULL;
    }
    PyObject *lists = args[0];
    Py_ssize_t total = 0;
    for (Py_ssize_t l = 0; l < PyList_GET_SIZE(lists); l++) {
        if (!PyList_CheckExact(PyList_GET_ITEM(lists, l))) {
            PyErr_SetString(PyExc_TypeError, "union_codes takes lists of ints");
            return NULL;
        }
        total += PyList_GET_SIZE(PyList_GET_ITEM(lists, l));
    }
    long long *codes = PyMem_Malloc(sizeof(long long) * (size_t)(total > 0 ? total : 1));
    if (codes == NULL)
        return PyErr_NoMemory();
    Py_ssize_t count = 0;
    for (Py_ssize_t l = 0; l < PyList_GET_SIZE(lists); l++) {
        PyObject *list = PyList_GET_ITEM(lists, l);
        if (read_codes(list, codes + count) < 0) {
            PyMem_Free(codes);
            return NULL;
        }
        count += PyList_GET_SIZE(list);
    }
    return sorted_list(codes, count);
}

/* sample_codes(getrandbits, population, k, pool): (sorted(random.Random.sample(population, k)), words) for a list
 * of ints from 0 below 2**63, drawn as CPython's sample draws them (``sampling.sample_sorted_python``): with pool
 * (population no longer than the set sample would make), a partial shuffle of the places, the i-th of them
 * randrange(n - i); else randrange(n), drawn again while that place was chosen before. ``words``: how many 32-bit
 * words of the generator the draws took (the caller puts its generator back there: the words were read in bulk). */
static PyObject *sample_codes(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4 || !PyList_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "sample_codes(getrandbits, list of ints, k, pool)");
        return NULL;
    }
    Py_ssize_t k = PyNumber_AsSsize_t(args[2], PyExc_OverflowError);
    if (k == -1 && PyErr_Occurred())
        return NULL;
    int pool = PyObject_IsTrue(args[3]);
    if (pool < 0)
        return NULL;
    PyObject *population = args[1];
    Py_ssize_t n = PyList_GET_SIZE(population);
    if (k < 0 || k > n) {
        PyErr_SetString(PyExc_ValueError, "Sample larger than population or is negative");
        return NULL;
    }
    /* (copied first: the draws call getrandbits, Python code that could change the list while it is read) */
    long long *values = PyMem_Malloc(8 * (size_t)(n > 0 ? n : 1));
    long long *chosen = PyMem_Malloc(8 * (size_t)(k > 0 ? k : 1));
    Py_ssize_t *places = NULL;
    unsigned char *taken = NULL;
    Words *w = NULL;
    PyObject *out = NULL;
    if (values == NULL || chosen == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if (read_codes(population, values) < 0)
        goto done;
    w = words_of(args[0]);
    if (w == NULL)
        goto done;
    if (pool) {
        places = PyMem_Malloc(sizeof *places * (size_t)(n > 0 ? n : 1));
        if (places == NULL) {
            PyErr_NoMemory();
            goto done;
        }
        for (Py_ssize_t i = 0; i < n; i++)
            places[i] = i;
        for (Py_ssize_t i = 0; i < k; i++) {
            unsigned long long j;
            if (below(w, (unsigned long long)(n - i), &j) < 0)
                goto done;
            chosen[i] = values[places[j]];
            places[j] = places[n - i - 1];
        }
    } else {
        taken = PyMem_Calloc((size_t)n / 8 + 1, 1);
        if (taken == NULL) {
            PyErr_NoMemory();
            goto done;
        }
        for (Py_ssize_t i = 0; i < k; i++) {
            unsigned long long j;
            do {
                if (below(w, (unsigned long long)n, &j) < 0)
                    goto done;
            } while (taken[j >> 3] & (1u << (j & 7)));
            taken[j >> 3] |= (unsigned char)(1u << (j & 7));
            chosen[i] = values[j];
        }
    }
    qsort(chosen, (size_t)k, sizeof *chosen, cmp_codes);
    PyObject *sample = int_list(chosen, k);
    if (sample != NULL)
        out = Py_BuildValue("(NL)", sample, w->taken);
done:
    PyMem_Free(w);
    PyMem_Free(places);
    PyMem_Free(taken);
    PyMem_Free(values);
    PyMem_Free(chosen);
    return out;
}

/* count_places(codes, at, pairs): how many of ``pairs`` (ints, each one of ``codes``) have each number of ``at``,
 * as a dict in the order the numbers are first seen among ``pairs``. ``codes`` (sorted, without repeats) and
 * ``at`` (the number of each code) are array('q') of one length. (``estimation.count_places_python``) */
static PyObject *count_places(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyList_CheckExact(args[2])) {
        PyErr_SetString(PyExc_TypeError, "count_places(codes, at, list of pair codes)");
        return NULL;
    }
    Py_buffer cv, av;
    if (PyObject_GetBuffer(args[0], &cv, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0)
        return NULL;
    if (PyObject_GetBuffer(args[1], &av, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0) {
        PyBuffer_Release(&cv);
        return NULL;
    }
    PyObject *out = NULL;
    long long *counts = NULL, *order = NULL;
    Py_ssize_t seen = 0, most = 0;
    if (cv.itemsize != 8 || av.itemsize != 8 || strcmp(cv.format, "q") != 0 || strcmp(av.format, "q") != 0
        || cv.len != av.len) {
        PyErr_SetString(PyExc_TypeError, "codes and at are array('q') of one length");
        goto done;
    }
    const long long *codes = cv.buf, *at = av.buf;
    Py_ssize_t n = cv.len / 8;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (at[i] < 0 || (i && codes[i] <= codes[i - 1])) {
            PyErr_SetString(PyExc_ValueError, "codes are sorted without repeats, and numbers at least 0");
            goto done;
        }
        if (at[i] + 1 > most)
            most = (Py_ssize_t)at[i] + 1;
    }
    counts = PyMem_Calloc((size_t)(most > 0 ? most : 1), sizeof *counts);
    order = PyMem_Malloc(sizeof *order * (size_t)(most > 0 ? most : 1));
    if (counts == NULL || order == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    PyObject *pairs = args[2];
    for (Py_ssize_t p = 0; p < PyList_GET_SIZE(pairs); p++) {
        long long c = PyLong_AsLongLong(PyList_GET_ITEM(pairs, p));
        if (c == -1 && PyErr_Occurred())
            goto done;
        Py_ssize_t lo = 0, hi = n;
        while (lo < hi) {
            Py_ssize_t mid = lo + (hi - lo) / 2;
            if (codes[mid] < c)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo == n || codes[lo] != c) {
            PyObject *missing = PyLong_FromLongLong(c);
            if (missing != NULL) {
                PyErr_SetObject(PyExc_KeyError, missing);
                Py_DECREF(missing);
            }
            goto done;
        }
        long long number = at[lo];
        if (counts[number]++ == 0)
            order[seen++] = number;
    }
    out = PyDict_New();
    for (Py_ssize_t s = 0; out != NULL && s < seen; s++) {
        PyObject *key = PyLong_FromLongLong(order[s]), *value = PyLong_FromLongLong(counts[order[s]]);
        if (key == NULL || value == NULL || PyDict_SetItem(out, key, value) < 0)
            Py_CLEAR(out);
        Py_XDECREF(key);
        Py_XDECREF(value);
    }
done:
    PyMem_Free(counts);
    PyMem_Free(order);
    PyBuffer_Release(&cv);
    PyBuffer_Release(&av);
    return out;
}

/* -- the pieces, for tests ------------------------------------------------------------------------------ */

static int two_texts(PyObject *const *args, Py_ssize_t nargs, Text *a, Text *b)
{
    if (nargs != 2 || !PyUnicode_Check(args[0]) || !PyUnicode_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "two str arguments");
        return -1;
    }
    if (PyUnicode_GET_LENGTH(args[0]) > MAX_LEN || PyUnicode_GET_LENGTH(args[1]) > MAX_LEN) {
        PyErr_SetString(PyExc_ValueError, "texts of at most 256 characters");
        return -1;
    }
    text_of(args[0], a);
    text_of(args[1], b);
    return 0;
}

static PyObject *py_jaro_winkler(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Text a, b;
    if (nargs == 3) {
        double cutoff = PyFloat_AsDouble(args[2]);
        if (cutoff == -1.0 && PyErr_Occurred())
            return NULL;
        if (two_texts(args, 2, &a, &b) < 0)
            return NULL;
        return PyFloat_FromDouble(jaro_winkler(&a, &b, cutoff));
    }
    if (two_texts(args, nargs, &a, &b) < 0)
        return NULL;
    return PyFloat_FromDouble(jaro_winkler(&a, &b, 0.0));
}

static PyObject *py_osa_within_one(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Text a, b;
    if (two_texts(args, nargs, &a, &b) < 0)
        return NULL;
    return PyBool_FromLong(osa_within_one(&a, &b));
}

static int set_ref(PyObject **slot, PyObject *value)
{
    Py_XSETREF(*slot, Py_NewRef(value));
    return 0;
}

static PyObject *level_named(PyObject *levels, const char *name)
{
    PyObject *v = PyDict_GetItemString(levels, name);
    if (v == NULL || !PyUnicode_CheckExact(v)) {
        PyErr_Format(PyExc_KeyError, "level %s missing", name);
        return NULL;
    }
    return v;
}

static PyObject *configure(PyObject *self, PyObject *args)
{
    PyObject *levels, *nick, *python, *token_set, *dob, *record_type;
    if (!PyArg_ParseTuple(args, "O!O!OOddOO!", &PyDict_Type, &levels, &PyDict_Type, &nick, &python, &token_set,
                          &JW_HIGH, &JW_LOW, &dob, &PyType_Type, &record_type))
        return NULL;
    Py_ssize_t offsets[6];
    for (int i = 0; i < 6; i++) {  /* each field a slot holding any object (T_OBJECT_EX), else no direct reads */
        PyObject *descr = PyDict_GetItemWithError(((PyTypeObject *)record_type)->tp_dict, ATTR[i]);
        if (descr == NULL && PyErr_Occurred())
            return NULL;
        if (descr == NULL || Py_TYPE(descr) != &PyMemberDescr_Type ||
                ((PyMemberDescrObject *)descr)->d_member->type != T_OBJECT_EX) {
            record_type = NULL;
            break;
        }
        offsets[i] = ((PyMemberDescrObject *)descr)->d_member->offset;
    }
    if (record_type != NULL)
        memcpy(OFFSET, offsets, sizeof offsets);
    Py_XSETREF(RECORD_TYPE, (PyTypeObject *)Py_XNewRef(record_type));
    /* (the names of the constants in ``LEVEL_SLOTS``, in its order) */
    static const char *const names_[N_LEVELS] = {"null", "exact", "nickname", "jw_92", "jw_80", "different",
                                                 "swapped", "one_off", "year", "month", "decade", "typo", "prefix"};
    for (int i = 0; i < N_LEVELS; i++) {
        PyObject *v = level_named(levels, names_[i]);
        if (v == NULL)
            return NULL;
        set_ref(LEVEL_SLOTS[i], v);
    }
    set_ref(&NICK_INDEX, nick);
    set_ref(&PY_COMPARE, python);
    set_ref(&PY_TOKEN_SET, token_set);
    set_ref(&PY_DOB, dob);
    Py_RETURN_NONE;
}

/* a METH_FASTCALL method: its name, its C function, its doc */
#define FAST_AS(name, function, doc) {name, (PyCFunction)(void (*)(void))function, METH_FASTCALL, doc}
#define FAST(function, doc) FAST_AS(#function, function, doc)

static PyMethodDef methods[] = {
    FAST(compare, "compare(a, b): the comparison vector of two attribute records."),
    FAST(compare_total,
         "compare_total(a, b, vector, vector_apart, agrees): (compare(a, b), the total of its weights)."),
    FAST(date_of_birth, "date_of_birth(a, b): the level of two dates of birth (None: unknown)."),
    FAST(scan, "scan(rec, keys, blocks, node_profile, records, shared, pid, spec, tf, adjust, dob_compatible): "
               "fuzzy.candidates_python, compiled."),
    FAST(compare_codes,
         "compare_codes(records, codes, n, compared): compared[i * n + j] = compare(records[i], records[j]) "
         "where missing."),
    FAST(draws, "draws(getrandbits, n, count): count draws of random.Random.randrange(n), as int64 bytes."),
    FAST(random_pairs, "random_pairs(getrandbits, n, count): random pairs of n records as codes i * n + j (int64 bytes)."),
    FAST(group_pairs, "group_pairs(getrandbits, members, ends, n, count): random pairs within groups as codes "
                      "(int64 bytes)."),
    FAST(block_pair_codes, "block_pair_codes(blocks, n): every block's pair codes i * n + j, sorted, without repeats."),
    FAST(union_codes, "union_codes(lists): the ints of the lists, sorted, without repeats."),
    FAST(sample_codes, "sample_codes(getrandbits, population, k, pool): (sorted(Random.sample(population, k)), "
                       "words drawn)."),
    FAST(count_places, "count_places(codes, at, pairs): {number: how many of pairs have it}, first seen first."),
    FAST_AS("jaro_winkler", py_jaro_winkler,
            "jaro_winkler(a, b[, cutoff]): rapidfuzz's JaroWinkler.similarity (prefix weight 0.1)."),
    FAST_AS("osa_within_one", py_osa_within_one,
            "osa_within_one(a, b): whether the optimal string alignment distance is at most 1."),
    {"configure", configure, METH_VARARGS,
     "configure(levels, nickname_index, python_compare, token_set_level, jw_high, jw_low, python_date_of_birth, "
     "record_type)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_ccompare", NULL, -1, methods};

PyMODINIT_FUNC PyInit__ccompare(void)
{
    const char *fields[] = {"first_name", "last_name", "date_of_birth", "address", "postcode", "city"};
    for (int i = 0; i < 6; i++) {
        ATTR[i] = PyUnicode_InternFromString(fields[i]);
        if (ATTR[i] == NULL)
            return NULL;
    }
    return PyModule_Create(&module);
}
