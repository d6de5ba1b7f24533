/*
 * Optional C accelerator for the segment record decoder and the Arrow batch builder.
 *
 * Two functions, both with pure-Python equivalents that define their behaviour:
 *
 * decode_records(data, first_offset, first_timestamp, legacy, key, position)
 *     Exactly the contract of streamhouse_beam.segment.decode (module docstring): same
 *     results, same exception classes, same messages. Any change there must be mirrored here;
 *     tests/test_speedups_parity.py compares the two on every fixture and hypothesis case.
 *
 * decode_columns(data, first_offset, first_timestamp, legacy, key, position)
 *     The same records as Arrow column buffers (the batch read path; its section below and
 *     streamhouse_beam.segment.decode.decode_columns_py; tests/test_columns.py).
 *
 * records_to_columns(records, large)
 *     Turns a list of (offset, timestamp, key-or-None, value) tuples into the raw buffers of
 *     Arrow arrays (see streamhouse_beam.beam.batches._columns_py), so a RecordBatch is built
 *     without a Python object per record per column.
 *
 * Only the stable C API is used and no third-party header, so the module builds wherever
 * CPython's headers and a C compiler exist; without them, the pure-Python code runs instead.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static PyObject *CorruptSegmentError = NULL;
static PyObject *TruncatedSegmentError = NULL;

/* Lazily resolved: importing streamhouse_beam.errors at module init would be fine too, but
 * a lazy lookup keeps this module importable on its own (the build check imports it). */
static int
load_errors(void)
{
    if (CorruptSegmentError != NULL) {
        return 0;
    }
    PyObject *mod = PyImport_ImportModule("streamhouse_beam.errors");
    if (mod == NULL) {
        return -1;
    }
    PyObject *corrupt = PyObject_GetAttrString(mod, "CorruptSegmentError");
    PyObject *truncated = PyObject_GetAttrString(mod, "TruncatedSegmentError");
    Py_DECREF(mod);
    if (corrupt == NULL || truncated == NULL) {
        Py_XDECREF(corrupt);
        Py_XDECREF(truncated);
        return -1;
    }
    CorruptSegmentError = corrupt;
    TruncatedSegmentError = truncated;
    return 0;
}

/* Raise cls(message, key=key, position=position). */
static void
raise_segment_error(PyObject *cls, PyObject *message, PyObject *key, PyObject *position)
{
    if (message == NULL) {
        return;
    }
    PyObject *args = PyTuple_Pack(1, message);
    PyObject *kwargs = Py_BuildValue("{sOsO}", "key", key, "position", position);
    Py_DECREF(message);
    if (args == NULL || kwargs == NULL) {
        Py_XDECREF(args);
        Py_XDECREF(kwargs);
        return;
    }
    PyObject *exc = PyObject_Call(cls, args, kwargs);
    Py_DECREF(args);
    Py_DECREF(kwargs);
    if (exc == NULL) {
        return;
    }
    PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
    Py_DECREF(exc);
}

/* Why a record could not be decoded. */
enum { ERR_NONE = 0, ERR_VARINT_TOO_LONG, ERR_TRUNCATED_VARINT, ERR_TRUNCATED_BYTES };

typedef struct {
    const uint8_t *d;
    Py_ssize_t n;
    /* filled on failure */
    int err;
    const char *field;
    Py_ssize_t record_start;
    Py_ssize_t varint_start;
    Py_ssize_t bytes_start; /* first byte of the key or value that runs past the end */
    uint64_t bytes_len;     /* its declared length */
} Parser;

/* Unsigned LEB128 at *i; bits above bit 63 of a 10-byte varint are dropped. */
static inline int
read_uvarint(Parser *p, Py_ssize_t *i, uint64_t *out, const char *field)
{
    const uint8_t *d = p->d;
    Py_ssize_t n = p->n;
    Py_ssize_t start = *i;
    if (start < n && d[start] < 0x80) {
        *out = d[start];
        *i = start + 1;
        return 0;
    }
    uint64_t result = 0;
    unsigned shift = 0;
    Py_ssize_t j = start;
    for (;;) {
        /* Ten continuation bytes are corrupt even when the data ends right after them. */
        if (j - start >= 10) {
            p->err = ERR_VARINT_TOO_LONG;
            p->varint_start = start;
            return -1;
        }
        if (j >= n) {
            p->err = ERR_TRUNCATED_VARINT;
            p->field = field;
            return -1;
        }
        uint8_t b = d[j++];
        if (shift < 64) {
            result |= (uint64_t)(b & 0x7F) << shift;
        }
        if (!(b & 0x80)) {
            break;
        }
        shift += 7;
    }
    *out = result;
    *i = j;
    return 0;
}

static inline uint64_t
zigzag(uint64_t u)
{
    return (u >> 1) ^ (uint64_t)(-(int64_t)(u & 1));
}

typedef struct {
    uint64_t offset_delta;
    uint64_t timestamp_delta;
    Py_ssize_t key_start; /* -1 when the key is absent (key_len 0) */
    Py_ssize_t key_len;
    Py_ssize_t value_start;
    Py_ssize_t value_len;
} RawRecord;

/* Decode the record at *pos into rec and advance *pos; -1 with p->err set on failure. */
static inline int
next_record(Parser *p, Py_ssize_t *pos, RawRecord *rec)
{
    Py_ssize_t i = *pos;
    uint64_t u, kl, vl;
    p->record_start = i;
    if (read_uvarint(p, &i, &u, "offset delta") < 0) {
        return -1;
    }
    rec->offset_delta = zigzag(u);
    if (read_uvarint(p, &i, &u, "timestamp delta") < 0) {
        return -1;
    }
    rec->timestamp_delta = zigzag(u);
    if (read_uvarint(p, &i, &kl, "key length") < 0) {
        return -1;
    }
    if (kl) {
        if (kl > (uint64_t)(p->n - i)) {
            p->err = ERR_TRUNCATED_BYTES;
            p->field = "key";
            p->bytes_start = i;
            p->bytes_len = kl;
            return -1;
        }
        rec->key_start = i;
        rec->key_len = (Py_ssize_t)kl;
        i += (Py_ssize_t)kl;
    }
    else {
        rec->key_start = -1;
        rec->key_len = 0;
    }
    if (read_uvarint(p, &i, &vl, "value length") < 0) {
        return -1;
    }
    if (vl > (uint64_t)(p->n - i)) {
        p->err = ERR_TRUNCATED_BYTES;
        p->field = "value";
        p->bytes_start = i;
        p->bytes_len = vl;
        return -1;
    }
    rec->value_start = i;
    rec->value_len = (Py_ssize_t)vl;
    *pos = i + (Py_ssize_t)vl;
    return 0;
}

/* Turn p's failure into the same exception the pure-Python decoder raises. */
static void
raise_parser_error(Parser *p, PyObject *key, PyObject *position)
{
    if (load_errors() < 0) {
        return;
    }
    if (p->err == ERR_VARINT_TOO_LONG) {
        raise_segment_error(
            CorruptSegmentError,
            PyUnicode_FromFormat("varint longer than 10 bytes at block byte %zd", p->varint_start),
            key, position);
        return;
    }
    PyObject *need;
    if (p->err == ERR_TRUNCATED_VARINT) {
        need = PyLong_FromSsize_t(p->n + 1);
    }
    else {
        /* start + declared length, exact even beyond 2**64 as Python computes it. */
        PyObject *a = PyLong_FromSsize_t(p->bytes_start);
        PyObject *b = PyLong_FromUnsignedLongLong(p->bytes_len);
        need = (a && b) ? PyNumber_Add(a, b) : NULL;
        Py_XDECREF(a);
        Py_XDECREF(b);
    }
    if (need == NULL) {
        return;
    }
    raise_segment_error(
        TruncatedSegmentError,
        PyUnicode_FromFormat(
            "record at block byte %zd is truncated: %s needs bytes up to block byte %S, "
            "block has %zd",
            p->record_start, p->field, need, p->n),
        key, position);
    Py_DECREF(need);
}

/* Parse the Python arguments shared by the decoder; fills view (caller releases). */
static int
get_u64_mask(PyObject *obj, uint64_t *out)
{
    if (!PyLong_Check(obj)) {
        /* Let int() semantics decide (e.g. bool is an int; floats are refused). */
        PyObject *as_int = PyNumber_Index(obj);
        if (as_int == NULL) {
            return -1;
        }
        *out = (uint64_t)PyLong_AsUnsignedLongLongMask(as_int);
        Py_DECREF(as_int);
    }
    else {
        *out = (uint64_t)PyLong_AsUnsignedLongLongMask(obj);
    }
    if (*out == (uint64_t)-1 && PyErr_Occurred()) {
        return -1;
    }
    return 0;
}

/* A contiguous view of data; non-contiguous buffers are copied like bytes(data) would. */
static int
get_view(PyObject *data, Py_buffer *view, PyObject **holder)
{
    *holder = NULL;
    if (PyObject_GetBuffer(data, view, PyBUF_SIMPLE) == 0) {
        return 0;
    }
    PyErr_Clear();
    PyObject *copy = PyBytes_FromObject(data);
    if (copy == NULL) {
        return -1;
    }
    if (PyObject_GetBuffer(copy, view, PyBUF_SIMPLE) < 0) {
        Py_DECREF(copy);
        return -1;
    }
    *holder = copy;
    return 0;
}

static PyObject *
decode_records(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 6) {
        PyErr_Format(PyExc_TypeError,
                     "decode_records() takes 6 positional arguments (data, first_offset, "
                     "first_timestamp, legacy, key, position), got %zd",
                     nargs);
        return NULL;
    }
    PyObject *key = args[4];
    PyObject *position = args[5];
    uint64_t off, ts;
    int legacy;
    Py_buffer view;
    PyObject *holder;
    if (get_view(args[0], &view, &holder) < 0) {
        return NULL;
    }
    PyObject *out = PyList_New(0);
    if (out == NULL) {
        goto fail;
    }
    if (view.len == 0) {
        PyBuffer_Release(&view);
        Py_XDECREF(holder);
        return out;
    }
    if (get_u64_mask(args[1], &off) < 0 || get_u64_mask(args[2], &ts) < 0) {
        goto fail;
    }
    legacy = PyObject_IsTrue(args[3]);
    if (legacy < 0) {
        goto fail;
    }

    Parser p = {(const uint8_t *)view.buf, view.len, ERR_NONE, NULL, 0, 0, 0, 0};
    const char *base = (const char *)view.buf;
    Py_ssize_t pos = 0;
    int first = 1;
    RawRecord rec;
    while (pos < p.n) {
        if (next_record(&p, &pos, &rec) < 0) {
            raise_parser_error(&p, key, position);
            goto fail;
        }
        if (first) {
            /* §1.9: a legacy block's non-zero first delta counts from the previous block's
             * last offset, i.e. first_offset - 1. */
            off = (legacy && rec.offset_delta) ? off - 1 + rec.offset_delta
                                               : off + rec.offset_delta;
            first = 0;
        }
        else {
            off += rec.offset_delta;
        }
        ts += rec.timestamp_delta;
        PyObject *t = PyTuple_New(4);
        if (t == NULL) {
            goto fail;
        }
        PyObject *o = PyLong_FromUnsignedLongLong(off);
        PyObject *s = PyLong_FromUnsignedLongLong(ts);
        PyObject *k;
        if (rec.key_start < 0) {
            k = Py_None;
            Py_INCREF(k);
        }
        else {
            k = PyBytes_FromStringAndSize(base + rec.key_start, rec.key_len);
        }
        PyObject *v = PyBytes_FromStringAndSize(base + rec.value_start, rec.value_len);
        PyTuple_SET_ITEM(t, 0, o);
        PyTuple_SET_ITEM(t, 1, s);
        PyTuple_SET_ITEM(t, 2, k);
        PyTuple_SET_ITEM(t, 3, v);
        if (o == NULL || s == NULL || k == NULL || v == NULL) {
            Py_DECREF(t);
            goto fail;
        }
        int rc = PyList_Append(out, t);
        Py_DECREF(t);
        if (rc < 0) {
            goto fail;
        }
    }
    PyBuffer_Release(&view);
    Py_XDECREF(holder);
    return out;

fail:
    Py_XDECREF(out);
    PyBuffer_Release(&view);
    Py_XDECREF(holder);
    return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* decode_columns                                                                              */
/* ------------------------------------------------------------------------------------------ */

/*
 * decode_columns(data, first_offset, first_timestamp, legacy, key, position)
 *     The records decode_records would return, as the raw buffers of Arrow arrays instead of a
 *     Python tuple per record (the batch read path, streamhouse_beam.segment.columns). Same
 *     arguments, same errors (the records are parsed by the same code, in the same order,
 *     before any output is allocated). Returns the tuple
 *         (count, offsets, timestamps, key validity or None, key null count, key offsets,
 *          key data, value offsets, value data, large, max timestamp or None)
 *     with offsets/timestamps native u64, key/value offsets int32 (int64 when large, i.e.
 *     the block holds more than 2**31-1 key or value bytes), the validity bitmap LSB-first
 *     with padding bits 0 and present only when a key is absent. The pure-Python twin is
 *     streamhouse_beam.segment.decode.decode_columns_py; tests/test_columns.py compares them.
 */

/* Fill the column buffers from records already validated by a first pass (n records, kcap
 * key and vcap value bytes); returns how many were filled, fewer only if the block's bytes
 * changed in between (a writable buffer mutated by another thread), never writing past the
 * buffers. */
static Py_ssize_t
fill_columns(const uint8_t *d, Py_ssize_t len, uint64_t off, uint64_t ts, int legacy, int large,
             Py_ssize_t n, int64_t kcap, int64_t vcap, uint64_t *offs, uint64_t *tss,
             uint8_t *valid, char *ko, char *kd, char *vo, char *vd, uint64_t *max_ts)
{
    Parser p = {d, len, ERR_NONE, NULL, 0, 0, 0, 0};
    Py_ssize_t pos = 0, i = 0;
    int64_t kpos = 0, vpos = 0;
    uint64_t top = 0;
    RawRecord rec;
    while (pos < len) {
        if (i >= n || next_record(&p, &pos, &rec) < 0 || kpos + rec.key_len > kcap ||
            vpos + rec.value_len > vcap) {
            break; /* only if the bytes changed since the first pass */
        }
        if (i == 0) {
            off = (legacy && rec.offset_delta) ? off - 1 + rec.offset_delta
                                               : off + rec.offset_delta;
        }
        else {
            off += rec.offset_delta;
        }
        ts += rec.timestamp_delta;
        offs[i] = off;
        tss[i] = ts;
        if (i == 0 || ts > top) {
            top = ts;
        }
        if (large) {
            ((int64_t *)ko)[i] = kpos;
            ((int64_t *)vo)[i] = vpos;
        }
        else {
            ((int32_t *)ko)[i] = (int32_t)kpos;
            ((int32_t *)vo)[i] = (int32_t)vpos;
        }
        if (rec.key_start >= 0) {
            memcpy(kd + kpos, d + rec.key_start, (size_t)rec.key_len);
            kpos += rec.key_len;
            if (valid) {
                valid[i >> 3] |= (uint8_t)(1u << (i & 7));
            }
        }
        memcpy(vd + vpos, d + rec.value_start, (size_t)rec.value_len);
        vpos += rec.value_len;
        i++;
    }
    if (large) {
        ((int64_t *)ko)[i] = kpos;
        ((int64_t *)vo)[i] = vpos;
    }
    else {
        ((int32_t *)ko)[i] = (int32_t)kpos;
        ((int32_t *)vo)[i] = (int32_t)vpos;
    }
    *max_ts = top;
    return i;
}

static PyObject *
decode_columns(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 6) {
        PyErr_Format(PyExc_TypeError,
                     "decode_columns() takes 6 positional arguments (data, first_offset, "
                     "first_timestamp, legacy, key, position), got %zd",
                     nargs);
        return NULL;
    }
    PyObject *key = args[4];
    PyObject *position = args[5];
    uint64_t off = 0, ts = 0, max_ts = 0;
    int legacy = 0;
    Py_buffer view;
    PyObject *holder;
    PyObject *offsets = NULL, *timestamps = NULL, *validity = NULL, *key_offsets = NULL,
             *key_data = NULL, *value_offsets = NULL, *value_data = NULL;
    if (get_view(args[0], &view, &holder) < 0) {
        return NULL;
    }
    /* Argument checks in decode_records' order, so both accept and refuse the same calls. */
    if (view.len > 0) {
        if (get_u64_mask(args[1], &off) < 0 || get_u64_mask(args[2], &ts) < 0) {
            goto fail;
        }
        legacy = PyObject_IsTrue(args[3]);
        if (legacy < 0) {
            goto fail;
        }
    }

    /* First pass: validate every record (raising exactly what decode_records raises) and
     * size the buffers, so nothing is allocated for a block that turns out corrupt. */
    Parser p = {(const uint8_t *)view.buf, view.len, ERR_NONE, NULL, 0, 0, 0, 0};
    Py_ssize_t pos = 0, n = 0, nulls = 0;
    uint64_t key_bytes = 0, value_bytes = 0;
    RawRecord rec;
    int bad = 0;
    /* Both passes touch only the block's bytes and buffers nobody else sees yet (the view
     * keeps the block alive and unresizable): other threads run meanwhile. */
    Py_BEGIN_ALLOW_THREADS
    while (pos < p.n) {
        if (next_record(&p, &pos, &rec) < 0) {
            bad = 1;
            break;
        }
        n++;
        if (rec.key_start < 0) {
            nulls++;
        }
        else {
            key_bytes += (uint64_t)rec.key_len;
        }
        value_bytes += (uint64_t)rec.value_len;
    }
    Py_END_ALLOW_THREADS
    if (bad) {
        raise_parser_error(&p, key, position);
        goto fail;
    }
    int large = key_bytes > INT32_MAX || value_bytes > INT32_MAX;
    Py_ssize_t width = large ? 8 : 4;
    offsets = PyBytes_FromStringAndSize(NULL, n * 8);
    timestamps = PyBytes_FromStringAndSize(NULL, n * 8);
    if (nulls) {
        validity = PyBytes_FromStringAndSize(NULL, (n + 7) / 8);
    }
    else {
        validity = Py_None;
        Py_INCREF(validity);
    }
    key_offsets = PyBytes_FromStringAndSize(NULL, (n + 1) * width);
    key_data = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)key_bytes);
    value_offsets = PyBytes_FromStringAndSize(NULL, (n + 1) * width);
    value_data = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)value_bytes);
    if (!offsets || !timestamps || !validity || !key_offsets || !key_data || !value_offsets ||
        !value_data) {
        goto fail;
    }
    uint8_t *valid = nulls ? (uint8_t *)PyBytes_AS_STRING(validity) : NULL;
    if (valid) {
        memset(valid, 0, (size_t)((n + 7) / 8));
    }
    uint64_t *offs_buf = (uint64_t *)PyBytes_AS_STRING(offsets);
    uint64_t *ts_buf = (uint64_t *)PyBytes_AS_STRING(timestamps);
    char *ko = PyBytes_AS_STRING(key_offsets), *kd = PyBytes_AS_STRING(key_data);
    char *vo = PyBytes_AS_STRING(value_offsets), *vd = PyBytes_AS_STRING(value_data);
    Py_ssize_t filled;
    Py_BEGIN_ALLOW_THREADS
    filled = fill_columns((const uint8_t *)view.buf, view.len, off, ts, legacy, large, n,
                          (int64_t)key_bytes, (int64_t)value_bytes, offs_buf, ts_buf, valid, ko,
                          kd, vo, vd, &max_ts);
    Py_END_ALLOW_THREADS
    if (filled != n) {
        PyErr_SetString(PyExc_RuntimeError,
                        "decode_columns: the block's bytes changed while it was being decoded");
        goto fail;
    }
    PyBuffer_Release(&view);
    Py_XDECREF(holder);
    PyObject *top;
    if (n) {
        top = PyLong_FromUnsignedLongLong(max_ts);
        if (top == NULL) {
            goto fail_buffers; /* the view is already released */
        }
    }
    else {
        top = Py_None;
        Py_INCREF(top);
    }
    return Py_BuildValue("(nNNNnNNNNNN)", n, offsets, timestamps, validity, nulls, key_offsets,
                         key_data, value_offsets, value_data, PyBool_FromLong(large), top);

fail:
    PyBuffer_Release(&view);
    Py_XDECREF(holder);
fail_buffers:
    Py_XDECREF(offsets);
    Py_XDECREF(timestamps);
    Py_XDECREF(validity);
    Py_XDECREF(key_offsets);
    Py_XDECREF(key_data);
    Py_XDECREF(value_offsets);
    Py_XDECREF(value_data);
    return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* records_to_columns                                                                          */
/* ------------------------------------------------------------------------------------------ */

static int
check_record(PyObject *rec, Py_ssize_t i)
{
    if (!PyTuple_Check(rec) || PyTuple_GET_SIZE(rec) != 4) {
        PyErr_Format(PyExc_TypeError,
                     "records[%zd] must be an (offset, timestamp, key, value) tuple, got %R", i,
                     rec);
        return -1;
    }
    PyObject *k = PyTuple_GET_ITEM(rec, 2);
    PyObject *v = PyTuple_GET_ITEM(rec, 3);
    if ((k != Py_None && !PyBytes_Check(k)) || !PyBytes_Check(v)) {
        PyErr_Format(PyExc_TypeError,
                     "records[%zd] must hold bytes (or None) key and bytes value, got %R", i, rec);
        return -1;
    }
    return 0;
}

static PyObject *
records_to_columns(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError,
                     "records_to_columns() takes 2 positional arguments (records, large), got %zd",
                     nargs);
        return NULL;
    }
    PyObject *records = args[0];
    if (!PyList_Check(records)) {
        PyErr_Format(PyExc_TypeError, "records must be a list, got %R", Py_TYPE(records));
        return NULL;
    }
    int large = PyObject_IsTrue(args[1]);
    if (large < 0) {
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(records);
    /* First pass: validate and size the data buffers. */
    Py_ssize_t key_bytes = 0, value_bytes = 0, nulls = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *rec = PyList_GET_ITEM(records, i);
        if (check_record(rec, i) < 0) {
            return NULL;
        }
        PyObject *k = PyTuple_GET_ITEM(rec, 2);
        if (k == Py_None) {
            nulls++;
        }
        else {
            key_bytes += PyBytes_GET_SIZE(k);
        }
        value_bytes += PyBytes_GET_SIZE(PyTuple_GET_ITEM(rec, 3));
    }
    if (!large && (key_bytes > INT32_MAX || value_bytes > INT32_MAX)) {
        PyErr_SetString(PyExc_OverflowError,
                        "more than 2**31-1 key or value bytes: use large=True");
        return NULL;
    }
    Py_ssize_t width = large ? 8 : 4;
    PyObject *offsets = PyBytes_FromStringAndSize(NULL, n * 8);
    PyObject *timestamps = PyBytes_FromStringAndSize(NULL, n * 8);
    PyObject *validity = nulls ? PyBytes_FromStringAndSize(NULL, (n + 7) / 8) : Py_None;
    if (!nulls) {
        Py_INCREF(Py_None);
    }
    PyObject *key_offsets = PyBytes_FromStringAndSize(NULL, (n + 1) * width);
    PyObject *key_data = PyBytes_FromStringAndSize(NULL, key_bytes);
    PyObject *value_offsets = PyBytes_FromStringAndSize(NULL, (n + 1) * width);
    PyObject *value_data = PyBytes_FromStringAndSize(NULL, value_bytes);
    if (!offsets || !timestamps || !validity || !key_offsets || !key_data || !value_offsets ||
        !value_data) {
        goto fail;
    }
    uint64_t *offs = (uint64_t *)PyBytes_AS_STRING(offsets);
    uint64_t *tss = (uint64_t *)PyBytes_AS_STRING(timestamps);
    uint8_t *valid = nulls ? (uint8_t *)PyBytes_AS_STRING(validity) : NULL;
    char *ko = PyBytes_AS_STRING(key_offsets);
    char *kd = PyBytes_AS_STRING(key_data);
    char *vo = PyBytes_AS_STRING(value_offsets);
    char *vd = PyBytes_AS_STRING(value_data);
    if (valid) {
        memset(valid, 0, (size_t)((n + 7) / 8));
    }
    int64_t kpos = 0, vpos = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *rec = PyList_GET_ITEM(records, i);
        uint64_t o, t;
        if (get_u64_mask(PyTuple_GET_ITEM(rec, 0), &o) < 0 ||
            get_u64_mask(PyTuple_GET_ITEM(rec, 1), &t) < 0) {
            goto fail;
        }
        offs[i] = o;
        tss[i] = t;
        if (large) {
            ((int64_t *)ko)[i] = kpos;
            ((int64_t *)vo)[i] = vpos;
        }
        else {
            ((int32_t *)ko)[i] = (int32_t)kpos;
            ((int32_t *)vo)[i] = (int32_t)vpos;
        }
        PyObject *k = PyTuple_GET_ITEM(rec, 2);
        if (k != Py_None) {
            Py_ssize_t kl = PyBytes_GET_SIZE(k);
            memcpy(kd + kpos, PyBytes_AS_STRING(k), (size_t)kl);
            kpos += kl;
            if (valid) {
                valid[i >> 3] |= (uint8_t)(1u << (i & 7));
            }
        }
        PyObject *v = PyTuple_GET_ITEM(rec, 3);
        Py_ssize_t vl = PyBytes_GET_SIZE(v);
        memcpy(vd + vpos, PyBytes_AS_STRING(v), (size_t)vl);
        vpos += vl;
    }
    if (large) {
        ((int64_t *)ko)[n] = kpos;
        ((int64_t *)vo)[n] = vpos;
    }
    else {
        ((int32_t *)ko)[n] = (int32_t)kpos;
        ((int32_t *)vo)[n] = (int32_t)vpos;
    }
    return Py_BuildValue("(NNNnNNNN)", offsets, timestamps, validity, nulls, key_offsets,
                         key_data, value_offsets, value_data);

fail:
    Py_XDECREF(offsets);
    Py_XDECREF(timestamps);
    Py_XDECREF(validity);
    Py_XDECREF(key_offsets);
    Py_XDECREF(key_data);
    Py_XDECREF(value_offsets);
    Py_XDECREF(value_data);
    return NULL;
}

static PyMethodDef methods[] = {
    {"decode_records", (PyCFunction)(void (*)(void))decode_records, METH_FASTCALL,
     "decode_records(data, first_offset, first_timestamp, legacy, key, position)\n--\n\n"
     "Decode one decompressed block into (offset, timestamp, key, value) tuples; the C twin\n"
     "of streamhouse_beam.segment.decode.decode_records_py (same results and errors)."},
    {"decode_columns", (PyCFunction)(void (*)(void))decode_columns, METH_FASTCALL, "decode_columns(data, first_offset, first_timestamp, legacy, key, position)\n--\n\nDecode one decompressed block into Arrow column buffers (see the C source)."},
    {"records_to_columns", (PyCFunction)(void (*)(void))records_to_columns, METH_FASTCALL,
     "records_to_columns(records, large)\n--\n\n"
     "Arrow buffers (offsets, timestamps, key validity or None, key null count, key offsets,\n"
     "key data, value offsets, value data) of a list of record tuples; offsets are int64\n"
     "when large is true, else int32."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "_speedups",
    "C accelerator for streamhouse_beam.segment.decode and streamhouse_beam.beam.batches.",
    -1,
    methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModule_Create(&module);
}
