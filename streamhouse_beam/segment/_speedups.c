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

/* obj as a u64 with the bits above 63 dropped, as int(obj) & (2**64 - 1). */
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

/* The six arguments both block decoders take:
 * (data, first_offset, first_timestamp, legacy, key, position). */
typedef struct {
    Py_buffer view;
    PyObject *holder; /* the bytes copy of a non-contiguous data, or NULL */
    uint64_t first_offset;
    uint64_t first_timestamp;
    int legacy;
    PyObject *key;      /* borrowed; for errors only */
    PyObject *position; /* borrowed; for errors only */
} BlockArgs;

static void
release_block_args(BlockArgs *a)
{
    PyBuffer_Release(&a->view);
    Py_CLEAR(a->holder);
}

/* Check and convert the decoders' arguments; on success the caller calls release_block_args.
 * The numbers and legacy are looked at only when the block is not empty (an empty block
 * decodes to nothing whatever they are, as in the pure-Python decoder). */
static int
parse_block_args(const char *name, PyObject *const *args, Py_ssize_t nargs, BlockArgs *a)
{
    if (nargs != 6) {
        PyErr_Format(PyExc_TypeError,
                     "%s() takes 6 positional arguments (data, first_offset, "
                     "first_timestamp, legacy, key, position), got %zd",
                     name, nargs);
        return -1;
    }
    a->first_offset = 0;
    a->first_timestamp = 0;
    a->legacy = 0;
    a->key = args[4];
    a->position = args[5];
    if (get_view(args[0], &a->view, &a->holder) < 0) {
        return -1;
    }
    if (a->view.len > 0) {
        if (get_u64_mask(args[1], &a->first_offset) < 0 ||
            get_u64_mask(args[2], &a->first_timestamp) < 0) {
            release_block_args(a);
            return -1;
        }
        a->legacy = PyObject_IsTrue(args[3]);
        if (a->legacy < 0) {
            release_block_args(a);
            return -1;
        }
    }
    return 0;
}

/* A walk over a block's records that keeps the absolute offset and timestamp of the last one
 * (the record walk of both decoders; touches no Python object, so it runs without the GIL). */
typedef struct {
    Parser p;
    Py_ssize_t pos;
    uint64_t offset;
    uint64_t timestamp;
    int legacy;
    int first;
} BlockWalk;

static inline void
walk_start(BlockWalk *w, const BlockArgs *a)
{
    Parser p = {(const uint8_t *)a->view.buf, a->view.len, ERR_NONE, NULL, 0, 0, 0, 0};
    w->p = p;
    w->pos = 0;
    w->offset = a->first_offset;
    w->timestamp = a->first_timestamp;
    w->legacy = a->legacy;
    w->first = 1;
}

/* Decode the next record into rec and make w->offset and w->timestamp its own: 1, or 0 at
 * the end of the block, or -1 with w->p's failure set (raise it with raise_parser_error). */
static inline int
walk_next(BlockWalk *w, RawRecord *rec)
{
    if (w->pos >= w->p.n) {
        return 0;
    }
    if (next_record(&w->p, &w->pos, rec) < 0) {
        return -1;
    }
    if (w->first && w->legacy && rec->offset_delta) {
        /* Segments written before 2026-02-06: a legacy block's non-zero first delta counts from the previous block's
         * last offset, i.e. first_offset - 1. */
        w->offset = w->offset - 1 + rec->offset_delta;
    }
    else {
        w->offset += rec->offset_delta;
    }
    w->first = 0;
    w->timestamp += rec->timestamp_delta;
    return 1;
}

static PyObject *
decode_records(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    BlockArgs a;
    if (parse_block_args("decode_records", args, nargs, &a) < 0) {
        return NULL;
    }
    PyObject *out = PyList_New(0);
    if (out == NULL) {
        goto fail;
    }
    const char *base = (const char *)a.view.buf;
    BlockWalk w;
    RawRecord rec;
    int rc;
    walk_start(&w, &a);
    while ((rc = walk_next(&w, &rec)) > 0) {
        PyObject *t = PyTuple_New(4);
        if (t == NULL) {
            goto fail;
        }
        PyObject *o = PyLong_FromUnsignedLongLong(w.offset);
        PyObject *s = PyLong_FromUnsignedLongLong(w.timestamp);
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
        int appended = PyList_Append(out, t);
        Py_DECREF(t);
        if (appended < 0) {
            goto fail;
        }
    }
    if (rc < 0) {
        raise_parser_error(&w.p, a.key, a.position);
        goto fail;
    }
    release_block_args(&a);
    return out;

fail:
    Py_XDECREF(out);
    release_block_args(&a);
    return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Arrow column buffers: shared by decode_columns and records_to_columns                      */
/* ------------------------------------------------------------------------------------------ */

/* The buffers of the columns: offsets and timestamps (u64), the key validity bitmap (None
 * when no key is absent), key/value offsets (int32, int64 when large) and data. */
typedef struct {
    PyObject *offsets, *timestamps, *validity, *key_offsets, *key_data, *value_offsets,
        *value_data;
} Columns;

#define COLUMNS_EMPTY {NULL, NULL, NULL, NULL, NULL, NULL, NULL}

/* Where the next record goes in the Columns' buffers (usable without the GIL). */
typedef struct {
    uint64_t *offsets;
    uint64_t *timestamps;
    uint8_t *valid; /* NULL when every key is present */
    char *key_offsets, *key_data, *value_offsets, *value_data;
    int large;
    int64_t kpos, vpos; /* key/value bytes written so far */
} ColumnWriter;

static void
clear_columns(Columns *c)
{
    Py_CLEAR(c->offsets);
    Py_CLEAR(c->timestamps);
    Py_CLEAR(c->validity);
    Py_CLEAR(c->key_offsets);
    Py_CLEAR(c->key_data);
    Py_CLEAR(c->value_offsets);
    Py_CLEAR(c->value_data);
}

/* Allocate the buffers of n records (nulls of them keyless) and point w at their starts;
 * -1 on a memory error (the caller clears c). */
static int
alloc_columns(Columns *c, ColumnWriter *w, Py_ssize_t n, Py_ssize_t nulls, Py_ssize_t key_bytes,
              Py_ssize_t value_bytes, int large)
{
    Py_ssize_t width = large ? 8 : 4;
    c->offsets = PyBytes_FromStringAndSize(NULL, n * 8);
    c->timestamps = PyBytes_FromStringAndSize(NULL, n * 8);
    if (nulls) {
        c->validity = PyBytes_FromStringAndSize(NULL, (n + 7) / 8);
    }
    else {
        c->validity = Py_None;
        Py_INCREF(c->validity);
    }
    c->key_offsets = PyBytes_FromStringAndSize(NULL, (n + 1) * width);
    c->key_data = PyBytes_FromStringAndSize(NULL, key_bytes);
    c->value_offsets = PyBytes_FromStringAndSize(NULL, (n + 1) * width);
    c->value_data = PyBytes_FromStringAndSize(NULL, value_bytes);
    if (!c->offsets || !c->timestamps || !c->validity || !c->key_offsets || !c->key_data ||
        !c->value_offsets || !c->value_data) {
        return -1;
    }
    w->offsets = (uint64_t *)PyBytes_AS_STRING(c->offsets);
    w->timestamps = (uint64_t *)PyBytes_AS_STRING(c->timestamps);
    w->valid = nulls ? (uint8_t *)PyBytes_AS_STRING(c->validity) : NULL;
    if (w->valid) {
        memset(w->valid, 0, (size_t)((n + 7) / 8));
    }
    w->key_offsets = PyBytes_AS_STRING(c->key_offsets);
    w->key_data = PyBytes_AS_STRING(c->key_data);
    w->value_offsets = PyBytes_AS_STRING(c->value_offsets);
    w->value_data = PyBytes_AS_STRING(c->value_data);
    w->large = large;
    w->kpos = 0;
    w->vpos = 0;
    return 0;
}

static inline void
put_binary_offset(char *offsets, Py_ssize_t i, int64_t value, int large)
{
    if (large) {
        ((int64_t *)offsets)[i] = value;
    }
    else {
        ((int32_t *)offsets)[i] = (int32_t)value;
    }
}

/* Write record i; key is NULL when absent. The buffers were sized for it. */
static inline void
write_record(ColumnWriter *w, Py_ssize_t i, uint64_t offset, uint64_t timestamp, const char *key,
             Py_ssize_t key_len, const char *value, Py_ssize_t value_len)
{
    w->offsets[i] = offset;
    w->timestamps[i] = timestamp;
    put_binary_offset(w->key_offsets, i, w->kpos, w->large);
    put_binary_offset(w->value_offsets, i, w->vpos, w->large);
    if (key != NULL) {
        memcpy(w->key_data + w->kpos, key, (size_t)key_len);
        w->kpos += key_len;
        if (w->valid) {
            w->valid[i >> 3] |= (uint8_t)(1u << (i & 7));
        }
    }
    memcpy(w->value_data + w->vpos, value, (size_t)value_len);
    w->vpos += value_len;
}

/* The closing key/value offsets after n records. */
static inline void
finish_columns(ColumnWriter *w, Py_ssize_t n)
{
    put_binary_offset(w->key_offsets, n, w->kpos, w->large);
    put_binary_offset(w->value_offsets, n, w->vpos, w->large);
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
fill_columns(const BlockArgs *a, ColumnWriter *cw, Py_ssize_t n, int64_t kcap, int64_t vcap,
             uint64_t *max_ts)
{
    const char *base = (const char *)a->view.buf;
    BlockWalk w;
    RawRecord rec;
    Py_ssize_t i = 0;
    uint64_t top = 0;
    walk_start(&w, a);
    while (i < n && walk_next(&w, &rec) > 0) {
        if (cw->kpos + rec.key_len > kcap || cw->vpos + rec.value_len > vcap) {
            break; /* only if the bytes changed since the first pass */
        }
        if (i == 0 || w.timestamp > top) {
            top = w.timestamp;
        }
        write_record(cw, i, w.offset, w.timestamp,
                     rec.key_start < 0 ? NULL : base + rec.key_start, rec.key_len,
                     base + rec.value_start, rec.value_len);
        i++;
    }
    finish_columns(cw, i);
    *max_ts = top;
    return i;
}

static PyObject *
decode_columns(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    BlockArgs a;
    Columns c = COLUMNS_EMPTY;
    ColumnWriter cw;
    uint64_t max_ts = 0;
    if (parse_block_args("decode_columns", args, nargs, &a) < 0) {
        return NULL;
    }

    /* First pass: validate every record (raising exactly what decode_records raises) and
     * size the buffers, so nothing is allocated for a block that turns out corrupt. */
    BlockWalk w;
    RawRecord rec;
    Py_ssize_t n = 0, nulls = 0;
    uint64_t key_bytes = 0, value_bytes = 0;
    int rc;
    walk_start(&w, &a);
    /* Both passes touch only the block's bytes and buffers nobody else sees yet (the view
     * keeps the block alive and unresizable): other threads run meanwhile. */
    Py_BEGIN_ALLOW_THREADS
    while ((rc = walk_next(&w, &rec)) > 0) {
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
    if (rc < 0) {
        raise_parser_error(&w.p, a.key, a.position);
        goto fail;
    }
    int large = key_bytes > INT32_MAX || value_bytes > INT32_MAX;
    if (alloc_columns(&c, &cw, n, nulls, (Py_ssize_t)key_bytes, (Py_ssize_t)value_bytes, large) <
        0) {
        goto fail;
    }
    Py_ssize_t filled;
    Py_BEGIN_ALLOW_THREADS
    filled = fill_columns(&a, &cw, n, (int64_t)key_bytes, (int64_t)value_bytes, &max_ts);
    Py_END_ALLOW_THREADS
    if (filled != n) {
        PyErr_SetString(PyExc_RuntimeError,
                        "decode_columns: the block's bytes changed while it was being decoded");
        goto fail;
    }
    release_block_args(&a);
    PyObject *top;
    if (n) {
        top = PyLong_FromUnsignedLongLong(max_ts);
        if (top == NULL) {
            clear_columns(&c); /* the view is already released */
            return NULL;
        }
    }
    else {
        top = Py_None;
        Py_INCREF(top);
    }
    return Py_BuildValue("(nNNNnNNNNNN)", n, c.offsets, c.timestamps, c.validity, nulls,
                         c.key_offsets, c.key_data, c.value_offsets, c.value_data,
                         PyBool_FromLong(large), top);

fail:
    release_block_args(&a);
    clear_columns(&c);
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
    Columns c = COLUMNS_EMPTY;
    ColumnWriter cw;
    if (alloc_columns(&c, &cw, n, nulls, key_bytes, value_bytes, large) < 0) {
        goto fail;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *rec = PyList_GET_ITEM(records, i);
        uint64_t o, t;
        if (get_u64_mask(PyTuple_GET_ITEM(rec, 0), &o) < 0 ||
            get_u64_mask(PyTuple_GET_ITEM(rec, 1), &t) < 0) {
            goto fail;
        }
        PyObject *k = PyTuple_GET_ITEM(rec, 2);
        PyObject *v = PyTuple_GET_ITEM(rec, 3);
        write_record(&cw, i, o, t, k == Py_None ? NULL : PyBytes_AS_STRING(k),
                     k == Py_None ? 0 : PyBytes_GET_SIZE(k), PyBytes_AS_STRING(v),
                     PyBytes_GET_SIZE(v));
    }
    finish_columns(&cw, n);
    return Py_BuildValue("(NNNnNNNN)", c.offsets, c.timestamps, c.validity, nulls, c.key_offsets,
                         c.key_data, c.value_offsets, c.value_data);

fail:
    clear_columns(&c);
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
