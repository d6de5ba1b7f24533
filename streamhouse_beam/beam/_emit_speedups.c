/*
 * Optional C accelerator for streamhouse_beam.beam.emit: turns a polled chunk of decoded
 * records into the WindowedValues a records-mode read yields.
 *
 * Per record, the pure-Python loop builds the output row, a Beam Timestamp through its
 * validating constructor and a WindowedValue; on FnApiRunner that costs about as much as
 * everything Beam itself does with the element afterwards. Here the row is allocated as the
 * tuple subclass it is, records of one millisecond share one Timestamp, and the Timestamp (an
 * EventTime, which stores its micros) is filled in directly; the attribute layout is verified
 * against Beam's own constructor by _emit.py before this function is ever used (see
 * emit._timestamp_layout_ok).
 *
 * windowed_records(records, values, topic, partition, row_type, kv, wv_type, ts_type, windows,
 *                  times)
 *   records:   list of (offset, timestamp_ms, key, raw_value) tuples (the decoder's output)
 *   values:    None (values are the raw bytes) or a list of decoded values, one per record
 *   topic, partition: put in every row
 *   row_type:  a 6-field tuple subclass without __dict__ (StreamHouseRecord, StreamHouseRow)
 *   kv:        true: the element is a plain (key, value) tuple instead of a row
 *   wv_type:   apache_beam.utils.windowed_value.WindowedValue
 *   ts_type:   streamhouse_beam.beam.emit.EventTime (a Timestamp subclass)
 *   windows:   the windows tuple of every output
 *   times:     None: each output's timestamp is its record's (an EventTime of timestamp_ms);
 *              a list as long as records: output i's timestamp is times[i]; any other object:
 *              the timestamp of every output (event-time policies other than record time)
 * Returns (an iterator making the outputs one per next(), largest timestamp_ms), or None when
 * a timestamp does not fit Beam's int64 microseconds (the caller then takes the pure-Python
 * path, which reports it). Every record is checked before the iterator is returned.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

static PyObject *str_precision = NULL;
static PyObject *str_seconds = NULL;
static PyObject *str_subseconds = NULL;
static PyObject *str_micros = NULL;
static PyObject *int_six = NULL;
static PyObject *empty_tuple = NULL;

/* An EventTime of `ms` milliseconds: the fields Timestamp(micros=ms * 1000) would have, plus
 * the stored `micros` of the EventTime subclass (_emit.py). */
static PyObject *
new_timestamp(PyTypeObject *ts_type, uint64_t ms)
{
    PyObject *ts = PyBaseObject_Type.tp_new(ts_type, empty_tuple, NULL);
    if (ts == NULL) {
        return NULL;
    }
    PyObject *sec = PyLong_FromUnsignedLongLong(ms / 1000);
    PyObject *sub = sec ? PyLong_FromUnsignedLongLong((ms % 1000) * 1000) : NULL;
    PyObject *micros = sub ? PyLong_FromUnsignedLongLong(ms * 1000) : NULL;
    if (micros == NULL || PyObject_SetAttr(ts, str_precision, int_six) < 0 ||
        PyObject_SetAttr(ts, str_seconds, sec) < 0 ||
        PyObject_SetAttr(ts, str_subseconds, sub) < 0 ||
        PyObject_SetAttr(ts, str_micros, micros) < 0) {
        Py_XDECREF(sec);
        Py_XDECREF(sub);
        Py_XDECREF(micros);
        Py_DECREF(ts);
        return NULL;
    }
    Py_DECREF(sec);
    Py_DECREF(sub);
    Py_DECREF(micros);
    return ts;
}

static PyObject *
new_row(PyTypeObject *row_type, PyObject *topic, PyObject *partition, PyObject *rec,
        PyObject *value)
{
    PyObject *row = row_type->tp_alloc(row_type, 6);
    if (row == NULL) {
        return NULL;
    }
    PyObject *items[6] = {topic,
                          partition,
                          PyTuple_GET_ITEM(rec, 0),
                          PyTuple_GET_ITEM(rec, 1),
                          PyTuple_GET_ITEM(rec, 2),
                          value};
    for (int j = 0; j < 6; j++) {
        Py_INCREF(items[j]);
        PyTuple_SET_ITEM(row, j, items[j]);
    }
    return row;
}

/* The lazy iterator windowed_records returns: one WindowedValue per next(). Building the
 * outputs one at a time (not a whole chunk into a list) lets each die as soon as the runner
 * is done with it; a chunk of live outputs would survive the young-generation collections
 * and make the garbage collector walk them again and again. */
typedef struct {
    PyObject_HEAD
    PyObject *records; /* list of (offset, timestamp_ms, key, raw_value) */
    PyObject *values;  /* None or list of decoded values */
    PyObject *topic;
    PyObject *partition;
    PyTypeObject *row_type;
    int kv;
    PyObject *wv_type;
    PyTypeObject *ts_type;
    PyObject *windows;
    Py_ssize_t next;
    uint64_t prev_ms;
    PyObject *ts; /* the Timestamp of prev_ms, shared by records of one millisecond */
    PyObject *times; /* NULL: record timestamps; a list: one per record; else: one for all */
} OutputsIter;

static void
outputs_dealloc(OutputsIter *it)
{
    PyObject_GC_UnTrack(it);
    Py_XDECREF(it->records);
    Py_XDECREF(it->values);
    Py_XDECREF(it->topic);
    Py_XDECREF(it->partition);
    Py_XDECREF(it->row_type);
    Py_XDECREF(it->wv_type);
    Py_XDECREF(it->ts_type);
    Py_XDECREF(it->windows);
    Py_XDECREF(it->ts);
    Py_XDECREF(it->times);
    PyObject_GC_Del(it);
}

static int
outputs_traverse(OutputsIter *it, visitproc visit, void *arg)
{
    Py_VISIT(it->records);
    Py_VISIT(it->values);
    Py_VISIT(it->topic);
    Py_VISIT(it->partition);
    Py_VISIT(it->row_type);
    Py_VISIT(it->wv_type);
    Py_VISIT(it->ts_type);
    Py_VISIT(it->windows);
    Py_VISIT(it->ts);
    Py_VISIT(it->times);
    return 0;
}

static PyObject *
outputs_next(OutputsIter *it)
{
    if (it->next >= PyList_GET_SIZE(it->records)) {
        return NULL; /* exhausted: StopIteration */
    }
    Py_ssize_t i = it->next++;
    PyObject *rec = PyList_GET_ITEM(it->records, i);
    /* Shapes and timestamps were checked when the iterator was made; the list is private. */
    uint64_t ms = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(rec, 1));
    if (ms == (uint64_t)-1 && PyErr_Occurred()) {
        return NULL;
    }
    if (it->ts == NULL || ms != it->prev_ms) {
        Py_XDECREF(it->ts);
        it->ts = new_timestamp(it->ts_type, ms);
        if (it->ts == NULL) {
            return NULL;
        }
        it->prev_ms = ms;
    }
    PyObject *value =
        it->values == Py_None ? PyTuple_GET_ITEM(rec, 3) : PyList_GET_ITEM(it->values, i);
    PyObject *element = it->kv ? PyTuple_Pack(2, PyTuple_GET_ITEM(rec, 2), value)
                               : new_row(it->row_type, it->topic, it->partition, rec, value);
    if (element == NULL) {
        return NULL;
    }
    PyObject *wv_args[3] = {element, it->ts, it->windows};
    PyObject *wv = PyObject_Vectorcall(it->wv_type, wv_args, 3, NULL);
    Py_DECREF(element);
    return wv;
}

/* outputs_next for timestamps the event-time policy chose (it->times): a type of its own, so
 * the record-time iterator above stays exactly the code it was (its per-record cost is the
 * read's hot path). */
static PyObject *
given_times_next(OutputsIter *it)
{
    if (it->next >= PyList_GET_SIZE(it->records)) {
        return NULL; /* exhausted: StopIteration */
    }
    Py_ssize_t i = it->next++;
    PyObject *rec = PyList_GET_ITEM(it->records, i);
    PyObject *ts = PyList_CheckExact(it->times) ? PyList_GET_ITEM(it->times, i) : it->times;
    PyObject *value =
        it->values == Py_None ? PyTuple_GET_ITEM(rec, 3) : PyList_GET_ITEM(it->values, i);
    PyObject *element = it->kv ? PyTuple_Pack(2, PyTuple_GET_ITEM(rec, 2), value)
                               : new_row(it->row_type, it->topic, it->partition, rec, value);
    if (element == NULL) {
        return NULL;
    }
    PyObject *wv_args[3] = {element, ts, it->windows};
    PyObject *wv = PyObject_Vectorcall(it->wv_type, wv_args, 3, NULL);
    Py_DECREF(element);
    return wv;
}

static PyObject *
outputs_length_hint(OutputsIter *it, PyObject *unused)
{
    (void)unused;
    return PyLong_FromSsize_t(PyList_GET_SIZE(it->records) - it->next);
}

static PyMethodDef outputs_methods[] = {
    {"__length_hint__", (PyCFunction)outputs_length_hint, METH_NOARGS,
     "Outputs not yet produced."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject OutputsIterType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "streamhouse_beam.beam._emit_speedups.OutputsIter",
    .tp_basicsize = sizeof(OutputsIter),
    .tp_dealloc = (destructor)outputs_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The WindowedValues of a chunk of records, made one per next().",
    .tp_traverse = (traverseproc)outputs_traverse,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)outputs_next,
    .tp_methods = outputs_methods,
};

static PyTypeObject GivenTimesIterType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "streamhouse_beam.beam._emit_speedups.GivenTimesIter",
    .tp_basicsize = sizeof(OutputsIter),
    .tp_dealloc = (destructor)outputs_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The WindowedValues of a chunk of records with given timestamps, one per next().",
    .tp_traverse = (traverseproc)outputs_traverse,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)given_times_next,
    .tp_methods = outputs_methods,
};

static PyObject *
windowed_records(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 10) {
        PyErr_Format(PyExc_TypeError,
                     "windowed_records() takes 10 positional arguments (records, values, topic, "
                     "partition, row_type, kv, wv_type, ts_type, windows, times), got %zd",
                     nargs);
        return NULL;
    }
    PyObject *records = args[0], *values = args[1], *row_obj = args[4], *ts_obj = args[7];
    int kv = PyObject_IsTrue(args[5]);
    if (kv < 0) {
        return NULL;
    }
    if (!PyList_CheckExact(records)) {
        PyErr_Format(PyExc_TypeError, "records must be a list, got %R", Py_TYPE(records));
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(records);
    if (values != Py_None && (!PyList_CheckExact(values) || PyList_GET_SIZE(values) != n)) {
        PyErr_SetString(PyExc_TypeError, "values must be None or a list as long as records");
        return NULL;
    }
    if (!PyType_Check(row_obj) || !PyType_IsSubtype((PyTypeObject *)row_obj, &PyTuple_Type) ||
        ((PyTypeObject *)row_obj)->tp_dictoffset != 0) {
        PyErr_Format(PyExc_TypeError, "row_type must be a tuple subclass without __dict__, got %R",
                     row_obj);
        return NULL;
    }
    if (!PyType_Check(ts_obj)) {
        PyErr_Format(PyExc_TypeError, "ts_type must be a type, got %R", ts_obj);
        return NULL;
    }
    PyObject *times = args[9];
    if (PyList_CheckExact(times) && PyList_GET_SIZE(times) != n) {
        PyErr_SetString(PyExc_TypeError, "times must be None, a Timestamp or a list as long as records");
        return NULL;
    }
    /* Check every record and find the largest timestamp before anything is emitted. */
    uint64_t max_ms = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *rec = PyList_GET_ITEM(records, i);
        if (!PyTuple_Check(rec) || PyTuple_GET_SIZE(rec) != 4) {
            PyErr_Format(PyExc_TypeError,
                         "records[%zd] must be an (offset, timestamp, key, value) tuple, got %R",
                         i, rec);
            return NULL;
        }
        uint64_t ms = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(rec, 1));
        if (ms == (uint64_t)-1 && PyErr_Occurred()) {
            return NULL;
        }
        if (ms > (uint64_t)(INT64_MAX / 1000)) {
            /* Beyond Beam's int64 microseconds: the pure-Python path reports the record. */
            Py_RETURN_NONE;
        }
        if (ms > max_ms) {
            max_ms = ms;
        }
    }
    /* A private copy: the caller's list may change while outputs are still being made. */
    PyObject *copy = PyList_GetSlice(records, 0, n);
    if (copy == NULL) {
        return NULL;
    }
    OutputsIter *it = PyObject_GC_New(
        OutputsIter, times == Py_None ? &OutputsIterType : &GivenTimesIterType);
    if (it == NULL) {
        Py_DECREF(copy);
        return NULL;
    }
    it->records = copy;
    Py_INCREF(values);
    it->values = values;
    Py_INCREF(args[2]);
    it->topic = args[2];
    Py_INCREF(args[3]);
    it->partition = args[3];
    Py_INCREF(row_obj);
    it->row_type = (PyTypeObject *)row_obj;
    it->kv = kv;
    Py_INCREF(args[6]);
    it->wv_type = args[6];
    Py_INCREF(ts_obj);
    it->ts_type = (PyTypeObject *)ts_obj;
    Py_INCREF(args[8]);
    it->windows = args[8];
    it->next = 0;
    it->prev_ms = 0;
    it->ts = NULL;
    it->times = NULL;
    if (times != Py_None) {
        /* A list is copied: the caller's may change while outputs are still being made. */
        it->times = PyList_CheckExact(times) ? PyList_GetSlice(times, 0, n) : Py_NewRef(times);
        if (it->times == NULL) {
            Py_DECREF(it);
            return NULL;
        }
    }
    PyObject_GC_Track(it);
    return Py_BuildValue("(NK)", (PyObject *)it, (unsigned long long)max_ms);
}

static PyMethodDef methods[] = {
    {"windowed_records", (PyCFunction)(void (*)(void))windowed_records, METH_FASTCALL,
     "windowed_records(records, values, topic, partition, row_type, kv, wv_type, ts_type, "
     "windows, times)\n--\n\n"
     "An iterator over the WindowedValues of a polled chunk (made one per next()) and the\n"
     "chunk's largest timestamp in milliseconds, or None when a timestamp does not fit Beam's\n"
     "int64 microseconds; the C twin of streamhouse_beam.beam.emit.windowed_records_py."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_emit_speedups", "C accelerator for streamhouse_beam.beam._emit.",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__emit_speedups(void)
{
    if (PyType_Ready(&OutputsIterType) < 0 || PyType_Ready(&GivenTimesIterType) < 0) {
        return NULL;
    }
    str_precision = PyUnicode_InternFromString("_precision");
    str_seconds = PyUnicode_InternFromString("_seconds");
    str_subseconds = PyUnicode_InternFromString("_subseconds");
    str_micros = PyUnicode_InternFromString("micros");
    int_six = PyLong_FromLong(6);
    empty_tuple = PyTuple_New(0);
    if (!str_precision || !str_seconds || !str_subseconds || !str_micros || !int_six || !empty_tuple) {
        return NULL;
    }
    return PyModule_Create(&module);
}
