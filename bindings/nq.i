/*
 * nq.i: the SWIG interface behind libnq's Python, Go and Java bindings.
 *
 * It generates one raw layer per language, module "nqraw":
 * - the constants and version functions of nq/nq.h (error codes, options,
 *   protocols, purposes, counters, nq_version, nq_strerror);
 * - a few small classes (Opts, Comm, Msg, Completions, Completion, Ids,
 *   Text, Chunks) that hold libnq's handles and turn its out-parameters into values
 *   every target language can take: each method returns an NQ_* code or a
 *   plain value.
 * Each language's package builds its native API on top; nothing here or
 * there re-implements the protocol, every call goes to libnq.so.1.
 *
 * Futures without callbacks into the language: Comm::put registers a C++
 * completion (nq_future_on_done) that only appends (token, result) to a
 * Completions queue; one thread (or goroutine) per communicator in the
 * language blocks in Completions::next and resolves the language's future.
 * The put's nq_future stays with its entry so that Comm::cancel can
 * withdraw the put (nq_future_cancel) by token until next() has reported
 * it.  nq_future_cancel waits for the I/O threads, whose completions take
 * the Completions lock, so cancel marks the entry under the lock, calls it
 * with the lock released, and whichever of next(), cancel and the queue's
 * final cleanup lets go of the entry last frees the future with it.
 * Peer events go the same way: Opts::set_events registers a C++ callback
 * that appends each event to an Events queue, which a thread (goroutine)
 * of the language drains with Events::next.
 * libnq's I/O threads therefore never enter Python, Go or Java for
 * completions and events: no GIL to take on an I/O thread, no directors, no
 * callback into an interpreter that is shutting down.
 * The one exception is the secret callback (nq_opts_set_secret_fn), whose
 * answer libnq needs before it can connect: Opts::set_secret takes a
 * Python callable, a Go cgo.Handle or a Java object, and a trampoline per
 * language calls it on the connecting thread (taking the GIL, through the
 * exported Go function nqGoSecret, attached to the JVM).  The callable is
 * held by a shared nqb_secret until the Opts and every Comm opened with
 * them are gone.
 *
 * Bytes cross the boundary through four parameter pairs, mapped per
 * language below:
 *   (const void *data, size_t len)       message bytes sent zero-copy: they
 *                                        must stay alive and unchanged until
 *                                        the put's completion is reported
 *                                        (Python buffer, Go []byte, Java
 *                                        direct ByteBuffer)
 *   (const void *src, size_t src_len),
 *   (const void *peers, size_t peers_len),
 *   (const void *id, size_t id_len)      bytes read during the call only
 *                                        (Python buffer, Go []byte, Java
 *                                        byte[]); peers are 16 bytes each
 * and two return types, nqb_view (a view of bytes owned by the object
 * called, such as a message) and nq_id, both copied into a bytes object,
 * []byte or byte[].
 *
 * Built with swig -c++ (the helpers are C++); for Python also -threads, so
 * the GIL is released around every call into libnq.
 */

#if defined(SWIGPYTHON)
%module(package="nq", threads="1") nqraw
#else
%module nqraw
#endif

%{
#include <nq/nq.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <new>
#include <string.h>
#include <string>
#include <unordered_map>
#include <vector>
%}

%include <stdint.i>

#if defined(SWIGJAVA)
/* Plain int constants: the Java layer passes them as int. */
%include <enumsimple.swg>
/* Lifetimes are managed explicitly by the Java layer (delete()). */
%typemap(javafinalize) SWIGTYPE ""
/* The library comes from the jar, the property libnq.jni.path or
 * java.library.path (NativeLoader.java, in the same package). */
%pragma(java) jniclasscode=%{
  static {
    NativeLoader.load();
  }
%}
#endif

/* ---- what nq/nq.h contributes ------------------------------------------- */

/* Handle-based functions are reached through the classes below; the types
 * that carry raw pointers or callbacks are not wrapped. */
%ignore nq_id;
%ignore nq_id_random;
%ignore nq_id_parse;
%ignore nq_id_format;
%ignore nq_id_equal;
%ignore nq_bytes;
%ignore nq_chunk;
%ignore nq_opts_new;
%ignore nq_opts_free;
%ignore nq_opts_set_id;
%ignore nq_opts_get_id;
%ignore nq_opts_set_netloc;
%ignore nq_opts_set_int;
%ignore nq_opts_get_int;
%ignore nq_opts_set_tls;
%ignore nq_opts_set_tls_identity;
%ignore nq_opts_set_tls_trust;
%ignore nq_opts_set_mqtt_prefix;
%ignore nq_opts_set_login;
%ignore nq_opts_set_token;
%ignore nq_opts_accept_token;
%ignore nq_opts_set_secret_fn;
%ignore nq_secret_fn;
%ignore nq_opts_set_tls_server_name;
%ignore nq_opts_set_tls_alpn;
%ignore nq_opts_set_mqtt_client_id;
%ignore nq_opts_set_serializer;
%ignore nq_opts_set_log;
%ignore nq_opts_set_events;
%ignore nq_opts_set_admission;
%ignore nq_admission;
%ignore nq_admit_fn;
%ignore nq_event;
%ignore nq_event_fn;
%ignore nq_open;
%ignore nq_put;
%ignore nq_get;
%ignore nq_get_from;
%ignore nq_close;
%ignore nq_destroy;
%ignore nq_comm_id;
%ignore nq_server_id;
%ignore nq_local_port;
%ignore nq_peers;
%ignore nq_peer_identity;
%ignore nq_stat;
%ignore nq_future_wait;
%ignore nq_future_result;
%ignore nq_future_on_done;
%ignore nq_future_free;
%ignore nq_future_cancel;
%ignore nq_msg_peer;
%ignore nq_msg_data;
%ignore nq_msg_size;
%ignore nq_msg_free;
%ignore nq_alloc;
%ignore nq_free;
%ignore nq_put_value;
%ignore nq_get_value;

/* ---- bytes in ----------------------------------------------------------- */

#if defined(SWIGPYTHON)
%{
/* A buffer export held for the duration of one wrapped call; released when
 * the wrapper returns (with the GIL held again). */
struct nqb_pybuf {
    Py_buffer view;
    bool held;
    nqb_pybuf() : held(false) {}
    ~nqb_pybuf()
    {
        if (held) {
            PyBuffer_Release(&view);
        }
    }
};
%}
%typemap(in) (const void *data, size_t len) (nqb_pybuf pybuf)
{
    if ($input == Py_None) {
        $1 = NULL;
        $2 = 0;
    } else {
        if (PyObject_GetBuffer($input, &pybuf.view, PyBUF_CONTIG_RO) != 0) {
            SWIG_fail;
        }
        pybuf.held = true;
        $1 = pybuf.view.buf;
        $2 = (size_t)pybuf.view.len;
    }
}
%apply (const void *data, size_t len) {
    (const void *src, size_t src_len),
    (const void *peers, size_t peers_len),
    (const void *id, size_t id_len)
};
#endif

#if defined(SWIGGO)
%typemap(gotype) (const void *data, size_t len) "[]byte"
%typemap(in) (const void *data, size_t len)
%{
    $1 = $input.array;
    $2 = (size_t)$input.len;
%}
%apply (const void *data, size_t len) {
    (const void *src, size_t src_len),
    (const void *peers, size_t peers_len),
    (const void *id, size_t id_len)
};
#endif

#if defined(SWIGJAVA)
/* Zero-copy: a direct ByteBuffer, whole capacity (the Java layer passes a
 * slice from position to limit). */
%typemap(jni) (const void *data, size_t len) "jobject"
%typemap(jtype) (const void *data, size_t len) "java.nio.ByteBuffer"
%typemap(jstype) (const void *data, size_t len) "java.nio.ByteBuffer"
%typemap(javain) (const void *data, size_t len) "$javainput"
%typemap(in) (const void *data, size_t len)
{
    jlong cap = JCALL1(GetDirectBufferCapacity, jenv, $input);
    $1 = JCALL1(GetDirectBufferAddress, jenv, $input);
    if (cap < 0 || ($1 == NULL && cap > 0)) {
        SWIG_JavaThrowException(jenv, SWIG_JavaIllegalArgumentException,
                                "a direct ByteBuffer is required");
        return $null;
    }
    $2 = (size_t)cap;
}

/* Read during the call: byte[] (null gives no bytes). */
%typemap(jni) (const void *src, size_t src_len) "jbyteArray"
%typemap(jtype) (const void *src, size_t src_len) "byte[]"
%typemap(jstype) (const void *src, size_t src_len) "byte[]"
%typemap(javain) (const void *src, size_t src_len) "$javainput"
%typemap(in) (const void *src, size_t src_len)
{
    if ($input) {
        $2 = (size_t)JCALL1(GetArrayLength, jenv, $input);
        $1 = JCALL2(GetByteArrayElements, jenv, $input, 0);
        if ($1 == NULL) {
            return $null;
        }
    } else {
        $1 = NULL;
        $2 = 0;
    }
}
%typemap(freearg) (const void *src, size_t src_len)
{
    if ($input && $1) {
        JCALL3(ReleaseByteArrayElements, jenv, $input, (jbyte *)$1, JNI_ABORT);
    }
}
%apply (const void *src, size_t src_len) {
    (const void *peers, size_t peers_len),
    (const void *id, size_t id_len)
};
#endif

/* ---- bytes out ---------------------------------------------------------- */

%{
/* A view of bytes owned by someone else (a message), valid at least until
 * the wrapper has copied them into the target language. */
struct nqb_view {
    const void *data;
    size_t len;
};
%}

#if defined(SWIGPYTHON)
%typemap(out) nqb_view
{
    $result = PyBytes_FromStringAndSize((const char *)$1.data, (Py_ssize_t)$1.len);
}
%typemap(out) nq_id
{
    $result = PyBytes_FromStringAndSize((const char *)$1.bytes, (Py_ssize_t)sizeof($1.bytes));
}
#endif

#if defined(SWIGGO)
%typemap(gotype) nqb_view, nq_id "[]byte"
/* The message's memory outlives the call, so the Go side copies from it. */
%typemap(out) nqb_view
%{
    $result.array = (void *)$1.data;
    $result.len = (intgo)$1.len;
    $result.cap = (intgo)$1.len;
%}
%typemap(goout) nqb_view
%{
    $result = make([]byte, len($1))
    copy($result, $1)
%}
/* An id is a temporary of the wrapper: it travels in malloc'd memory that
 * the Go side copies and frees. */
%typemap(out) nq_id
%{
    $result.array = malloc(sizeof($1.bytes));
    if ($result.array != NULL) {
        memcpy($result.array, $1.bytes, sizeof($1.bytes));
    }
    $result.len = $result.array != NULL ? (intgo)sizeof($1.bytes) : 0;
    $result.cap = $result.len;
%}
%typemap(goout) nq_id
%{
    $result = make([]byte, len($1))
    copy($result, $1)
    if cap($1) > 0 {
        Swig_free(uintptr(unsafe.Pointer(&$1[:1][0])))
    }
%}
#endif

#if defined(SWIGJAVA)
%typemap(jni) nqb_view, nq_id "jbyteArray"
%typemap(jtype) nqb_view, nq_id "byte[]"
%typemap(jstype) nqb_view, nq_id "byte[]"
%typemap(javaout) nqb_view, nq_id { return $jnicall; }
%typemap(out) nqb_view
{
    $result = JCALL1(NewByteArray, jenv, (jsize)$1.len);
    if ($result != NULL && $1.len > 0) {
        JCALL4(SetByteArrayRegion, jenv, $result, 0, (jsize)$1.len, (const jbyte *)$1.data);
    }
}
%typemap(out) nq_id
{
    $result = JCALL1(NewByteArray, jenv, (jsize)sizeof($1.bytes));
    if ($result != NULL) {
        JCALL4(SetByteArrayRegion, jenv, $result, 0, (jsize)sizeof($1.bytes),
               (const jbyte *)$1.bytes);
    }
}
#endif

%include "nq/nq.h"

/* ---- the classes -------------------------------------------------------- */

%{
struct nqb_completions_state;

/* One tracked put: allocated before the put is queued, so that the I/O
 * thread only links it into the done list.  It owns the put's nq_future
 * and is freed with it by whoever lets go last: Completions::next once it
 * has reported the put, a Comm::cancel that was using the future then, or
 * the state's final cleanup for a put never reported. */
struct nqb_pending {
    nqb_pending *next;
    nqb_completions_state *state;
    nq_future *future; /* NULL until nq_put has queued the put */
    int64_t token;
    int result;
    int cancelling; /* Comm::cancel calls using future (under state->mu) */
    bool reported;  /* next() has handed it out (under state->mu) */
    void *owned;    /* nq_alloc'd copy of the data, or NULL */
};

/* Shared by a Completions object, every pending put and every cancel in
 * progress, so it outlives them all: freed when the last lets go. */
struct nqb_completions_state {
    std::mutex mu;
    std::condition_variable cv;
    nqb_pending *head;
    nqb_pending *tail;
    /* Tracked puts not yet reported by next(), by token: what cancel finds. */
    std::unordered_map<int64_t, nqb_pending *> unreported;
    long outstanding; /* tracked puts not yet completed */
    long refs;        /* the Completions object + outstanding + cancels */
    bool shut;
    nqb_completions_state() : head(NULL), tail(NULL), outstanding(0), refs(1), shut(false) {}
};

static void nqb_pending_free(nqb_pending *p)
{
    nq_future_free(p->future);
    delete p;
}

static void nqb_completions_unref(nqb_completions_state *s, std::unique_lock<std::mutex> &lock)
{
    bool last = --s->refs == 0;
    lock.unlock();
    if (last) {
        /* No cancel is in progress (each holds a reference), so every put
         * left in the done list is the state's alone. */
        while (s->head != NULL) {
            nqb_pending *p = s->head;
            s->head = p->next;
            nqb_pending_free(p);
        }
        delete s;
    }
}

/* Ends a Comm::cancel's hold on p (see Completions::hold). */
static void nqb_pending_let_go(nqb_pending *p)
{
    nqb_completions_state *s = p->state;
    std::unique_lock<std::mutex> lock(s->mu);
    bool last = --p->cancelling == 0 && p->reported;
    nqb_completions_unref(s, lock);
    if (last) {
        nqb_pending_free(p);
    }
}

/* Runs on a libnq I/O thread (or on the putting thread when the future is
 * already complete): frees the owned copy, links the entry, wakes next(). */
static void nqb_future_done(nq_future *future, int result, void *ctx)
{
    (void)future;
    nqb_pending *p = (nqb_pending *)ctx;
    nq_free(p->owned);
    p->owned = NULL;
    p->result = result;
    nqb_completions_state *s = p->state;
    std::unique_lock<std::mutex> lock(s->mu);
    p->next = NULL;
    if (s->tail != NULL) {
        s->tail->next = p;
    } else {
        s->head = p;
    }
    s->tail = p;
    s->outstanding--;
    s->cv.notify_all();
    nqb_completions_unref(s, lock);
}
%}


%{
/* Peer events, shared by an Events object, the Opts that registered it and
 * the Comm opened with them: freed when the last lets go, after libnq's
 * last callback (the Comm lets go once it is destroyed). */
struct nqb_events_state {
    std::mutex mu;
    std::condition_variable cv;
    std::vector<nq_event> queue;
    size_t head;
    bool shut;
    long refs;
    nqb_events_state() : head(0), shut(false), refs(1) {}
};

static void nqb_events_ref(nqb_events_state *s)
{
    std::lock_guard<std::mutex> lock(s->mu);
    s->refs++;
}

static void nqb_events_unref(nqb_events_state *s)
{
    bool last;
    {
        std::lock_guard<std::mutex> lock(s->mu);
        last = --s->refs == 0;
    }
    if (last) {
        delete s;
    }
}

/* Runs on a libnq I/O thread: queues the event and wakes Events::next. */
static void nqb_event(void *ctx, const nq_event *ev)
{
    nqb_events_state *s = (nqb_events_state *)ctx;
    std::lock_guard<std::mutex> lock(s->mu);
    s->queue.push_back(*ev);
    s->cv.notify_all();
}
%}


%{
/* A string argument where NULL and "" both mean "none" (Go cannot pass
 * NULL), as NULL. */
static const char *nqb_none_if_empty(const char *s)
{
    return s != NULL && *s != '\0' ? s : NULL;
}
%}


%{
/* The secret callback of one set of options (Opts::set_secret), shared by
 * the Opts and every Comm opened with them: the language's callable stays
 * alive until the last of them lets go, after libnq's last call (a Comm
 * lets go once it is destroyed).  Each language below gives the callable's
 * fields, nqb_secret_call (the nq_secret_fn libnq calls) and
 * nqb_secret_release (lets go of the callable). */
struct nqb_secret {
    std::atomic<long> refs;
#if defined(SWIGPYTHON)
    PyObject *fn;
#elif defined(SWIGGO)
    uintptr_t handle;
#elif defined(SWIGJAVA)
    JavaVM *vm;
    jobject source;
#endif
};

static int nqb_secret_call(void *ctx, char *buf, size_t size, size_t *len);
static void nqb_secret_release(nqb_secret *s);

static nqb_secret *nqb_secret_new()
{
    nqb_secret *s = new (std::nothrow) nqb_secret();
    if (s != NULL) {
        s->refs = 1;
    }
    return s;
}

static void nqb_secret_ref(nqb_secret *s)
{
    s->refs++;
}

static void nqb_secret_unref(nqb_secret *s)
{
    if (s != NULL && --s->refs == 0) {
        nqb_secret_release(s);
        delete s;
    }
}
%}

#if defined(SWIGPYTHON)
%{
/* Whether the interpreter can run Python: not once it is ending, when
 * taking the GIL would end the calling thread (one of libnq's or paho's). */
static bool nqb_python_running()
{
#if PY_VERSION_HEX >= 0x030D0000
    return Py_IsInitialized() && !Py_IsFinalizing();
#else
    return Py_IsInitialized() && !_Py_IsFinalizing();
#endif
}

/* Runs on the connecting thread, which may be one of libnq's or paho's:
 * takes the GIL, calls the callable and copies the str (UTF-8) or bytes
 * it returns.  A secret too long for buf fails the attempt (NQ_EAUTH)
 * with a RuntimeWarning; anything else, or an exception, fails it and is
 * reported as unraisable: the nq package's callable catches and warns
 * first, so this is only the last line. */
static int nqb_secret_call(void *ctx, char *buf, size_t size, size_t *len)
{
    nqb_secret *s = (nqb_secret *)ctx;
    if (!nqb_python_running()) {
        return NQ_EAUTH;
    }
    PyGILState_STATE gil = PyGILState_Ensure();
    int rv = NQ_EAUTH;
    PyObject *r = PyObject_CallObject(s->fn, NULL);
    if (r != NULL) {
        const char *p = NULL;
        Py_ssize_t n = 0;
        if (PyBytes_Check(r)) {
            p = PyBytes_AS_STRING(r);
            n = PyBytes_GET_SIZE(r);
        } else if (PyUnicode_Check(r)) {
            p = PyUnicode_AsUTF8AndSize(r, &n);
        }
        if (p != NULL && (size_t)n <= size) {
            memcpy(buf, p, (size_t)n);
            *len = (size_t)n;
            rv = NQ_OK;
        } else if (p != NULL) {
            PyErr_WarnFormat(PyExc_RuntimeWarning, 1,
                             "nq: the secret callback's secret is %zd bytes, more than the %zu "
                             "libnq takes, so the connection attempt fails",
                             n, size);
        }
        Py_DECREF(r);
    }
    if (PyErr_Occurred()) {
        PyErr_WriteUnraisable(s->fn);
    }
    PyGILState_Release(gil);
    return rv;
}

/* Lets go of the callable, with the GIL (the last Comm may be destroyed
 * with the GIL released); left alone while the interpreter is ending. */
static void nqb_secret_release(nqb_secret *s)
{
    if (nqb_python_running()) {
        PyGILState_STATE gil = PyGILState_Ensure();
        Py_XDECREF(s->fn);
        PyGILState_Release(gil);
    }
}

/* A new secret holding fn (None: NULL, no secret); sets *rv. */
static nqb_secret *nqb_secret_of(PyObject *fn, int *rv)
{
    *rv = NQ_OK;
    if (fn == NULL || fn == Py_None) {
        return NULL;
    }
    PyGILState_STATE gil = PyGILState_Ensure();
    nqb_secret *s = NULL;
    if (!PyCallable_Check(fn)) {
        *rv = NQ_EINVAL;
    } else if ((s = nqb_secret_new()) == NULL) {
        *rv = NQ_ENOMEM;
    } else {
        Py_INCREF(fn);
        s->fn = fn;
    }
    PyGILState_Release(gil);
    return s;
}
%}
%extend Opts {
    /* Calls fn (no arguments, returning str or bytes) for the secret of
     * every connection attempt (see nq_opts_set_secret_fn); None removes
     * it.  fn is held until these options and every communicator opened
     * with them are gone.  Returns NQ_OK, NQ_EINVAL (not callable) or
     * NQ_ENOMEM. */
    int set_secret(PyObject *fn)
    {
        int rv;
        nqb_secret *s = nqb_secret_of(fn, &rv);
        if (rv == NQ_OK) {
            rv = $self->set_secret_state(s);
        }
        nqb_secret_unref(s);
        return rv;
    }
}
#endif

#if defined(SWIGGO)
%{
/* Defined in Go (internal/nqraw/secret.go): calls the function behind the
 * cgo.Handle and copies its secret into buf. */
extern "C" int nqGoSecret(uintptr_t handle, char *buf, size_t size, size_t *len);

static int nqb_secret_call(void *ctx, char *buf, size_t size, size_t *len)
{
    return nqGoSecret(((nqb_secret *)ctx)->handle, buf, size, len);
}

/* The handle belongs to the Go side, which deletes it once the
 * communicator is destroyed. */
static void nqb_secret_release(nqb_secret *s)
{
    (void)s;
}
%}
%extend Opts {
    /* Asks the Go function behind handle (a cgo.Handle, see
     * nqraw.NewSecret) for the secret of every connection attempt (see
     * nq_opts_set_secret_fn); 0 removes it.  The caller keeps the handle
     * until every communicator opened with these options is destroyed.
     * Returns NQ_OK or NQ_ENOMEM. */
    int set_secret(uintptr_t handle)
    {
        if (handle == 0) {
            return $self->set_secret_state(NULL);
        }
        nqb_secret *s = nqb_secret_new();
        if (s == NULL) {
            return NQ_ENOMEM;
        }
        s->handle = handle;
        int rv = $self->set_secret_state(s);
        nqb_secret_unref(s);
        return rv;
    }
}
#endif

#if defined(SWIGJAVA)
%{
/* Runs on the connecting thread, which may be one of libnq's or paho's
 * (attached to the JVM for the call): calls the object's byte[] secret()
 * (org.libnq.Secrets, which catches and logs what the application's
 * source throws) and copies the bytes.  null, too many bytes or an
 * exception fail the attempt (NQ_EAUTH). */
static int nqb_secret_call(void *ctx, char *buf, size_t size, size_t *len)
{
    nqb_secret *s = (nqb_secret *)ctx;
    JNIEnv *env = NULL;
    bool attached = false;
    jint got = s->vm->GetEnv((void **)&env, JNI_VERSION_1_6);
    if (got == JNI_EDETACHED) {
        if (s->vm->AttachCurrentThreadAsDaemon((void **)&env, NULL) != JNI_OK) {
            return NQ_EAUTH;
        }
        attached = true;
    } else if (got != JNI_OK) {
        return NQ_EAUTH;
    }
    int rv = NQ_EAUTH;
    jclass cls = env->GetObjectClass(s->source);
    jmethodID secret = cls != NULL ? env->GetMethodID(cls, "secret", "()[B") : NULL;
    if (secret != NULL) {
        jbyteArray a = (jbyteArray)env->CallObjectMethod(s->source, secret);
        if (!env->ExceptionCheck() && a != NULL) {
            jsize n = env->GetArrayLength(a);
            if (n >= 0 && (size_t)n <= size) {
                env->GetByteArrayRegion(a, 0, n, (jbyte *)buf);
                if (!env->ExceptionCheck()) {
                    *len = (size_t)n;
                    rv = NQ_OK;
                }
            }
        }
        if (a != NULL) {
            env->DeleteLocalRef(a);
        }
    }
    if (env->ExceptionCheck()) {
        env->ExceptionDescribe();
        env->ExceptionClear();
    }
    if (cls != NULL) {
        env->DeleteLocalRef(cls);
    }
    if (attached) {
        s->vm->DetachCurrentThread();
    }
    return rv;
}

static void nqb_secret_release(nqb_secret *s)
{
    JNIEnv *env = NULL;
    jint got = s->vm->GetEnv((void **)&env, JNI_VERSION_1_6);
    if (got == JNI_EDETACHED) {
        if (s->vm->AttachCurrentThreadAsDaemon((void **)&env, NULL) != JNI_OK) {
            return;
        }
        env->DeleteGlobalRef(s->source);
        s->vm->DetachCurrentThread();
    } else if (got == JNI_OK) {
        env->DeleteGlobalRef(s->source);
    }
}
%}
/* An object with a method byte[] secret(), held through a global reference
 * (null: none). */
%typemap(jni) nqb_secret *java_source "jobject"
%typemap(jtype) nqb_secret *java_source "Object"
%typemap(jstype) nqb_secret *java_source "Object"
%typemap(javain) nqb_secret *java_source "$javainput"
%typemap(in) nqb_secret *java_source
{
    $1 = NULL;
    if ($input != NULL) {
        $1 = nqb_secret_new();
        if ($1 == NULL) {
            SWIG_JavaThrowException(jenv, SWIG_JavaOutOfMemoryError, "secret");
            return $null;
        }
        $1->source = NULL;
        if (JCALL1(GetJavaVM, jenv, &$1->vm) != JNI_OK ||
            ($1->source = JCALL1(NewGlobalRef, jenv, $input)) == NULL) {
            delete $1;
            SWIG_JavaThrowException(jenv, SWIG_JavaOutOfMemoryError, "secret");
            return $null;
        }
    }
}
%extend Opts {
    /* Calls java_source's byte[] secret() for the secret of every
     * connection attempt (see nq_opts_set_secret_fn); null removes it.  The
     * object is held until these options and every communicator opened
     * with them are gone.  Returns NQ_OK. */
    int set_secret(nqb_secret *java_source)
    {
        int rv = $self->set_secret_state(java_source);
        nqb_secret_unref(java_source);
        return rv;
    }
}
#endif


/* Members that hold libnq handles stay out of the target languages. */
%ignore Opts::raw;
%ignore Opts::events_state;
%ignore Opts::secret_state;
%ignore Opts::set_secret_state;
%ignore Events::state;
%ignore Event::set;
%ignore Msg::reset;
%ignore Completions::track;
%ignore Completions::arm;
%ignore Completions::untrack;
%ignore Completions::hold;
%ignore Ids::ids_;
%ignore Chunks::parts_;
%ignore Text::text_;

%inline %{

/* One peer event, as reported by Events::next: kind() is NQ_EVENT_*,
 * reason() an NQ_* code (see nq_event in nq.h). */
class Event {
public:
    Event() { memset(&ev_, 0, sizeof(ev_)); }
    int kind() const { return ev_.type; }
    int reason() const { return ev_.reason; }
    nq_id peer() const { return ev_.peer; }
    void set(const nq_event &ev) { ev_ = ev; }

private:
    nq_event ev_;
};

/* Peer events of one communicator, in order.  Thread-safe. */
class Events {
public:
    Events() : s_(new nqb_events_state()) {}
    ~Events()
    {
        shutdown();
        nqb_events_unref(s_);
    }

    /* Waits up to timeout_ms (-1: forever) for the next event.  Returns
     * NQ_OK, NQ_ETIMEDOUT, NQ_EINVAL, or NQ_ECLOSED once shutdown() was
     * called and every event has been reported. */
    int next(int64_t timeout_ms, Event *out)
    {
        if (out == NULL || timeout_ms < -1) {
            return NQ_EINVAL;
        }
        std::unique_lock<std::mutex> lock(s_->mu);
        auto ready = [this] { return s_->head < s_->queue.size() || s_->shut; };
        if (timeout_ms < 0) {
            s_->cv.wait(lock, ready);
        } else if (!s_->cv.wait_for(lock, std::chrono::milliseconds(timeout_ms), ready)) {
            return NQ_ETIMEDOUT;
        }
        if (s_->head == s_->queue.size()) {
            return NQ_ECLOSED;
        }
        out->set(s_->queue[s_->head++]);
        if (s_->head == s_->queue.size()) {
            s_->queue.clear();
            s_->head = 0;
        }
        return NQ_OK;
    }

    /* After this, next() reports NQ_ECLOSED once the queue is empty.  Call
     * it after the communicator is closed. */
    void shutdown()
    {
        std::lock_guard<std::mutex> lock(s_->mu);
        s_->shut = true;
        s_->cv.notify_all();
    }

    nqb_events_state *state() const { return s_; }

private:
    Events(const Events &);
    Events &operator=(const Events &);
    nqb_events_state *s_;
};

/* Options for Comm::open.  Not thread-safe (like nq_opts); build one, open
 * with it, free it. */
class Opts {
public:
    Opts() : o_(NULL), events_(NULL), secret_(NULL)
    {
        if (nq_opts_new(&o_) != NQ_OK) {
            o_ = NULL;
        }
    }
    ~Opts()
    {
        nq_opts_free(o_);
        if (events_ != NULL) {
            nqb_events_unref(events_);
        }
        nqb_secret_unref(secret_);
    }

    /* Reports the peer events of a communicator opened with these options
     * to events (NULL: none). */
    int set_events(Events *events)
    {
        nqb_events_state *s = events != NULL ? events->state() : NULL;
        int rv = nq_opts_set_events(o_, s != NULL ? nqb_event : NULL, s);
        if (rv != NQ_OK) {
            return rv;
        }
        if (s != NULL) {
            nqb_events_ref(s);
        }
        if (events_ != NULL) {
            nqb_events_unref(events_);
        }
        events_ = s;
        return NQ_OK;
    }

    nqb_events_state *events_state() const { return events_; }

    /* NQ_OK, or NQ_ENOMEM when the options could not be allocated. */
    int status() const { return o_ != NULL ? NQ_OK : NQ_ENOMEM; }

    /* id is the 16 bytes of a UUID. */
    int set_id(const void *id, size_t id_len)
    {
        nq_id v;
        if (id == NULL || id_len != sizeof(v.bytes)) {
            return NQ_EINVAL;
        }
        memcpy(v.bytes, id, sizeof(v.bytes));
        return nq_opts_set_id(o_, &v);
    }

    nq_id id() const
    {
        nq_id v;
        memset(&v, 0, sizeof(v));
        nq_opts_get_id(o_, &v);
        return v;
    }

    int set_netloc(const char *host, int port)
    {
        if (port < 0 || port > 65535) {
            return NQ_EINVAL;
        }
        return nq_opts_set_netloc(o_, host, (uint16_t)port);
    }

    int set_int(int option, int64_t value)
    {
        return nq_opts_set_int(o_, (nq_option)option, value);
    }

    /* NULL or "" means "none": the client's system trust store, or no key. */
    int set_tls(const char *key_path, const char *cert_path)
    {
        return nq_opts_set_tls(o_, nqb_none_if_empty(key_path), nqb_none_if_empty(cert_path));
    }

    /* This communicator's own key and certificate chain, either role (see
     * nq_opts_set_tls_identity): paths of PEM files, or with pem the PEM
     * text itself.  Both are required: NULL or "" gives NQ_EINVAL. */
    int set_tls_identity(const char *key, const char *cert, bool pem)
    {
        return nq_opts_set_tls_identity(o_, key, cert, pem ? 1 : 0);
    }

    /* The trust anchors that verify the peer (see nq_opts_set_tls_trust): a
     * PEM file, a directory of hashed PEM files, PEM text.  NULL or "" leaves
     * one out; leaving out all three gives NQ_EINVAL. */
    int set_tls_trust(const char *file, const char *dir, const char *pem)
    {
        return nq_opts_set_tls_trust(o_, nqb_none_if_empty(file), nqb_none_if_empty(dir),
                                     nqb_none_if_empty(pem));
    }

    int set_mqtt_prefix(const char *prefix) { return nq_opts_set_mqtt_prefix(o_, prefix); }

    /* MQTT: the broker login (see nq_opts_set_login); NULL or "" password:
     * none. */
    int set_login(const char *user, const char *password)
    {
        return nq_opts_set_login(o_, user, nqb_none_if_empty(password));
    }

    /* gRPC client: the bearer token sent with every call (see
     * nq_opts_set_token). */
    int set_token(const char *token) { return nq_opts_set_token(o_, token); }

    /* gRPC server: accepts token and names its clients identity (see
     * nq_opts_accept_token); called again it adds another. */
    int accept_token(const char *token, const char *identity)
    {
        return nq_opts_accept_token(o_, token, identity);
    }

    /* TLS client: the name expected in the server's certificate and sent
     * as SNI (see nq_opts_set_tls_server_name). */
    int set_tls_server_name(const char *name) { return nq_opts_set_tls_server_name(o_, name); }

    /* MQTT over TLS: the ALPN protocols, comma separated (see
     * nq_opts_set_tls_alpn). */
    int set_tls_alpn(const char *protocols) { return nq_opts_set_tls_alpn(o_, protocols); }

    /* MQTT: the client id given to the broker (see
     * nq_opts_set_mqtt_client_id). */
    int set_mqtt_client_id(const char *client_id)
    {
        return nq_opts_set_mqtt_client_id(o_, client_id);
    }

    /* Registers s (NULL: none) as the secret callback; the options hold a
     * reference until they are freed or another is set. */
    int set_secret_state(nqb_secret *s)
    {
        int rv = nq_opts_set_secret_fn(o_, s != NULL ? nqb_secret_call : NULL, s);
        if (rv != NQ_OK) {
            return rv;
        }
        if (s != NULL) {
            nqb_secret_ref(s);
        }
        nqb_secret_unref(secret_);
        secret_ = s;
        return NQ_OK;
    }

    nqb_secret *secret_state() const { return secret_; }

    const nq_opts *raw() const { return o_; }

private:
    Opts(const Opts &);
    Opts &operator=(const Opts &);
    nq_opts *o_;
    nqb_events_state *events_;
    nqb_secret *secret_;
};

/* A received message: empty until Comm::get fills it, freed with the
 * object (or by release()). */
class Msg {
public:
    Msg() : m_(NULL) { memset(&peer_, 0, sizeof(peer_)); }
    ~Msg() { nq_msg_free(m_); }

    /* The sender (all zeros while empty). */
    nq_id peer() const { return peer_; }

    /* The message's bytes, copied into the target language. */
    nqb_view data() const
    {
        nqb_view v = {"", 0};
        if (m_ != NULL) {
            const void *p;
            size_t n;
            if (nq_msg_data(m_, &p, &n) == NQ_OK && n > 0) {
                v.data = p;
                v.len = n;
            }
        }
        return v;
    }

    int64_t size() const { return (int64_t)nq_msg_size(m_); }

    /* Frees the message now; the object is empty again. */
    void release()
    {
        nq_msg_free(m_);
        m_ = NULL;
        memset(&peer_, 0, sizeof(peer_));
    }

    void reset(nq_msg *m)
    {
        release();
        m_ = m;
        nq_msg_peer(m_, &peer_);
    }

private:
    Msg(const Msg &);
    Msg &operator=(const Msg &);
    nq_msg *m_;
    nq_id peer_;
};

/* One completed put, as reported by Completions::next. */
struct Completion {
    int64_t token;
    int result;
    Completion() : token(0), result(0) {}
};

struct nqb_completions_state;

/* Completed puts, in completion order.  Thread-safe. */
class Completions {
public:
    Completions() : s_(new nqb_completions_state()) {}
    ~Completions()
    {
        std::unique_lock<std::mutex> lock(s_->mu);
        s_->shut = true;
        s_->cv.notify_all();
        nqb_completions_unref(s_, lock);
    }

    /* Waits up to timeout_ms (-1: forever) for the next completed put and
     * stores it in *out.  Returns NQ_OK, NQ_ETIMEDOUT, NQ_EINVAL, or
     * NQ_ECLOSED once shutdown() was called and every tracked put has been
     * reported. */
    int next(int64_t timeout_ms, Completion *out)
    {
        if (out == NULL || timeout_ms < -1) {
            return NQ_EINVAL;
        }
        std::unique_lock<std::mutex> lock(s_->mu);
        bool ready;
        if (timeout_ms < 0) {
            s_->cv.wait(lock, [this] { return ready_locked(); });
            ready = true;
        } else {
            ready = s_->cv.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                                    [this] { return ready_locked(); });
        }
        if (!ready) {
            return NQ_ETIMEDOUT;
        }
        nqb_pending *p = s_->head;
        if (p == NULL) {
            return NQ_ECLOSED;
        }
        s_->head = p->next;
        if (s_->head == NULL) {
            s_->tail = NULL;
        }
        s_->unreported.erase(p->token);
        p->reported = true;
        out->token = p->token;
        out->result = p->result;
        bool last = p->cancelling == 0;
        lock.unlock();
        if (last) {
            nqb_pending_free(p);
        }
        return NQ_OK;
    }

    /* After this, next() reports NQ_ECLOSED once everything tracked has
     * been reported.  Call it after the communicator is closed. */
    void shutdown()
    {
        std::lock_guard<std::mutex> lock(s_->mu);
        s_->shut = true;
        s_->cv.notify_all();
    }

    /* Number of tracked puts not yet completed. */
    long outstanding()
    {
        std::lock_guard<std::mutex> lock(s_->mu);
        return s_->outstanding;
    }

    /* Sets up the entry of a put about to be queued under token.  Returns
     * NQ_OK, NQ_ENOMEM, or NQ_EINVAL when the token is still in use. */
    int track(int64_t token, void *owned, nqb_pending **out)
    {
        nqb_pending *p = new (std::nothrow) nqb_pending();
        if (p == NULL) {
            return NQ_ENOMEM;
        }
        p->next = NULL;
        p->state = s_;
        p->future = NULL;
        p->token = token;
        p->result = NQ_EPENDING;
        p->cancelling = 0;
        p->reported = false;
        p->owned = owned;
        std::lock_guard<std::mutex> lock(s_->mu);
        try {
            if (!s_->unreported.emplace(token, p).second) {
                delete p;
                return NQ_EINVAL;
            }
        } catch (const std::bad_alloc &) {
            delete p;
            return NQ_ENOMEM;
        }
        s_->outstanding++;
        s_->refs++;
        *out = p;
        return NQ_OK;
    }

    /* Hands the queued put's future to its entry, which frees it; from now
     * on cancel can find it. */
    void arm(nqb_pending *p, nq_future *future)
    {
        std::lock_guard<std::mutex> lock(s_->mu);
        p->future = future;
    }

    /* Undoes track() for a put that libnq refused. */
    void untrack(nqb_pending *p)
    {
        nq_free(p->owned);
        std::unique_lock<std::mutex> lock(s_->mu);
        s_->unreported.erase(p->token);
        s_->outstanding--;
        delete p;
        nqb_completions_unref(s_, lock);
    }

    /* The queued, unreported put under token, kept (with the state) from
     * being freed until nqb_pending_let_go; NULL when there is none. */
    nqb_pending *hold(int64_t token)
    {
        std::lock_guard<std::mutex> lock(s_->mu);
        auto it = s_->unreported.find(token);
        if (it == s_->unreported.end() || it->second->future == NULL) {
            return NULL;
        }
        nqb_pending *p = it->second;
        p->cancelling++;
        s_->refs++;
        return p;
    }

private:
    Completions(const Completions &);
    Completions &operator=(const Completions &);
    bool ready_locked() const { return s_->head != NULL || (s_->shut && s_->outstanding == 0); }
    nqb_completions_state *s_;
};

/* The ids of connected peers at one moment (Comm::peers). */
class Ids {
public:
    int64_t size() const { return (int64_t)ids_.size(); }
    nq_id at(int64_t i) const
    {
        nq_id v;
        memset(&v, 0, sizeof(v));
        if (i >= 0 && (size_t)i < ids_.size()) {
            v = ids_[(size_t)i];
        }
        return v;
    }
    std::vector<nq_id> ids_;
};

/* Text that libnq wrote (Comm::peer_identity), as UTF-8 bytes: the language
 * layers decode it. */
class Text {
public:
    nqb_view bytes() const
    {
        nqb_view v = {text_.data(), text_.size()};
        return v;
    }
    std::string text_;
};

/* The pieces of one message, sent as one without being copied
 * (Comm::put_chunks): each add() records where a piece is, and the caller
 * keeps it alive and unchanged until the put's completion is reported. */
class Chunks {
public:
    /* Returns NQ_OK, NQ_EINVAL (no bytes where len says some) or
     * NQ_ENOMEM.  An empty piece is left out. */
    int add(const void *data, size_t len)
    {
        if (len == 0) {
            return NQ_OK;
        }
        if (data == NULL) {
            return NQ_EINVAL;
        }
        try {
            parts_.push_back(nq_chunk{data, len});
        } catch (const std::bad_alloc &) {
            return NQ_ENOMEM;
        }
        return NQ_OK;
    }

    int64_t size() const { return (int64_t)parts_.size(); }

    std::vector<nq_chunk> parts_;
};

/* A communicator.  Thread-safe like nq_comm; the object must outlive every
 * call on it (the language layers see to that). */
class Comm {
public:
    Comm() : c_(NULL), events_(NULL), secret_(NULL) { memset(&id_, 0, sizeof(id_)); }
    ~Comm()
    {
        nq_destroy(c_);
        /* No callback comes after destroy. */
        if (events_ != NULL) {
            nqb_events_unref(events_);
        }
        nqb_secret_unref(secret_);
    }

    int open(int protocol, int purpose, const Opts *opts)
    {
        if (c_ != NULL) {
            return NQ_EINVAL;
        }
        int rv = nq_open((nq_protocol)protocol, (nq_purpose)purpose,
                         opts != NULL ? opts->raw() : NULL, &c_);
        if (rv != NQ_OK) {
            c_ = NULL;
            return rv;
        }
        nq_comm_id(c_, &id_);
        if (opts != NULL && opts->events_state() != NULL) {
            events_ = opts->events_state();
            nqb_events_ref(events_);
        }
        if (opts != NULL && opts->secret_state() != NULL) {
            secret_ = opts->secret_state();
            nqb_secret_ref(secret_);
        }
        return NQ_OK;
    }

    /* Sends len bytes at data to the listed peers (16 bytes each; none: the
     * server, or every client).  With done, the bytes are sent zero-copy and
     * the put's result is reported to done under token: the caller keeps
     * them alive and unchanged until then.  Without done, libnq copies them
     * and nothing is reported. */
    int put(const void *data, size_t len, const void *peers, size_t peers_len,
            Completions *done, int64_t token)
    {
        nq_chunk chunk = {data, len};
        return send(&chunk, len > 0 ? 1 : 0, NULL, peers, peers_len, done, token);
    }

    /* As put, for a message in several pieces (see Chunks), each read in
     * place until the completion is reported. */
    int put_chunks(const Chunks *chunks, const void *peers, size_t peers_len, Completions *done,
                   int64_t token)
    {
        if (chunks == NULL) {
            return NQ_EINVAL;
        }
        return send(chunks->parts_.data(), chunks->parts_.size(), NULL, peers, peers_len, done,
                    token);
    }

    /* As put, but the bytes are copied first, so the caller may reuse them
     * at once; the result is still reported to done. */
    int put_copy(const void *src, size_t src_len, const void *peers, size_t peers_len,
                 Completions *done, int64_t token)
    {
        if (done == NULL) {
            nq_chunk chunk = {src, src_len};
            return send(&chunk, src_len > 0 ? 1 : 0, NULL, peers, peers_len, NULL, token);
        }
        void *owned = nq_alloc(src_len);
        if (owned == NULL) {
            return NQ_ENOMEM;
        }
        if (src_len > 0) {
            memcpy(owned, src, src_len);
        }
        nq_chunk chunk = {owned, src_len};
        return send(&chunk, src_len > 0 ? 1 : 0, owned, peers, peers_len, done, token);
    }

    /* Withdraws the put reported to done under token (see
     * nq_future_cancel): returns how many of its copies were withdrawn,
     * after which its result is NQ_ECANCELED (reported once the copies that
     * had started are done); 0 when nothing changed (every copy had
     * started, the put has completed, or the token is unknown or already
     * reported); or a negative NQ_* code.  On a closed communicator it
     * returns 0.  It waits briefly for the I/O threads, without holding
     * done's lock.  Not from an I/O thread (none of the bindings' code runs
     * there). */
    int64_t cancel(Completions *done, int64_t token)
    {
        if (done == NULL) {
            return NQ_EINVAL;
        }
        nqb_pending *p = done->hold(token);
        if (p == NULL) {
            return 0;
        }
        int rv = nq_future_cancel(p->future);
        nqb_pending_let_go(p);
        return rv;
    }

    /* Takes the next message into *out (see nq_get). */
    int get(int64_t timeout_ms, Msg *out)
    {
        if (out == NULL) {
            return NQ_EINVAL;
        }
        nq_msg *m;
        int rv = nq_get(c_, timeout_ms, &m);
        if (rv == NQ_OK) {
            out->reset(m);
        }
        return rv;
    }

    /* Takes the next message from the listed peers (16 bytes each) into
     * *out (see nq_get_from). */
    int get_from(const void *peers, size_t peers_len, int64_t timeout_ms, Msg *out)
    {
        if (out == NULL || peers_len % sizeof(nq_id) != 0) {
            return NQ_EINVAL;
        }
        nq_msg *m;
        int rv = nq_get_from(c_, (const nq_id *)peers, peers_len / sizeof(nq_id), timeout_ms, &m);
        if (rv == NQ_OK) {
            out->reset(m);
        }
        return rv;
    }

    /* The readiness descriptor (see nq_comm_fd), or a negative NQ_* code. */
    int fd()
    {
        int fd = -1;
        int rv = nq_comm_fd(c_, &fd);
        return rv == NQ_OK ? fd : rv;
    }

    int close() { return nq_close(c_); }

    nq_id id() const { return id_; }

    /* A client's server id once known, else all zeros. */
    nq_id server_id()
    {
        nq_id v;
        memset(&v, 0, sizeof(v));
        if (nq_server_id(c_, &v) != NQ_OK) {
            memset(&v, 0, sizeof(v));
        }
        return v;
    }

    /* The local port, or a negative NQ_* code. */
    int local_port()
    {
        uint16_t port;
        int rv = nq_local_port(c_, &port);
        return rv == NQ_OK ? (int)port : rv;
    }

    int peers(Ids *out)
    {
        if (out == NULL) {
            return NQ_EINVAL;
        }
        for (;;) {
            size_t count = 0;
            int rv = nq_peers(c_, out->ids_.data(), out->ids_.size(), &count);
            if (rv != NQ_OK) {
                return rv;
            }
            if (count <= out->ids_.size()) {
                out->ids_.resize(count);
                return NQ_OK;
            }
            out->ids_.resize(count + 8); /* it grew meanwhile: read again */
        }
    }

    /* What the peer (16 bytes) presented to authenticate itself over TLS,
     * into *out (see nq_peer_identity: "" when nothing).  Returns NQ_OK,
     * NQ_ENOPEER (not connected now), NQ_EINVAL or NQ_ENOMEM. */
    int peer_identity(const void *id, size_t id_len, Text *out)
    {
        nq_id peer;
        if (out == NULL || id == NULL || id_len != sizeof(peer.bytes)) {
            return NQ_EINVAL;
        }
        memcpy(peer.bytes, id, sizeof(peer.bytes));
        try {
            std::vector<char> buf(256);
            for (;;) {
                size_t len = 0;
                int rv = nq_peer_identity(c_, &peer, buf.data(), buf.size(), &len);
                if (rv != NQ_OK) {
                    return rv;
                }
                if (len < buf.size()) {
                    out->text_.assign(buf.data(), len);
                    return NQ_OK;
                }
                /* Cut short: read again with room for all of it (the peer
                 * may have reconnected meanwhile, so the length is checked
                 * again). */
                buf.resize(len + 1);
            }
        } catch (const std::bad_alloc &) {
            return NQ_ENOMEM;
        }
    }

    /* A counter's value, or a negative NQ_* code. */
    int64_t stat(int which)
    {
        int64_t v = 0;
        int rv = nq_stat(c_, (nq_stat_id)which, &v);
        return rv == NQ_OK ? v : rv;
    }

private:
    Comm(const Comm &);
    Comm &operator=(const Comm &);

    int send(const nq_chunk *chunks, size_t nchunks, void *owned, const void *peers,
             size_t peers_len, Completions *done, int64_t token)
    {
        if (peers_len % sizeof(nq_id) != 0 ||
            (nchunks > 0 && chunks[0].len > 0 && chunks[0].data == NULL)) {
            nq_free(owned);
            return NQ_EINVAL;
        }
        const nq_id *ids = peers_len > 0 ? (const nq_id *)peers : NULL;
        size_t nids = peers_len / sizeof(nq_id);
        if (done == NULL) {
            return nq_put(c_, chunks, nchunks, ids, nids, NULL);
        }
        nqb_pending *p = NULL;
        int rv = done->track(token, owned, &p);
        if (rv != NQ_OK) {
            nq_free(owned);
            return rv;
        }
        nq_future *f = NULL;
        rv = nq_put(c_, chunks, nchunks, ids, nids, &f);
        if (rv != NQ_OK) {
            done->untrack(p);
            return rv;
        }
        /* Before the completion is registered: once it has run, next() may
         * report and free the entry, future and all.  f is not touched
         * after that. */
        done->arm(p, f);
        rv = nq_future_on_done(f, nqb_future_done, p);
        if (rv != NQ_OK) {
            /* Only a second registration fails, and this is the first. */
            nq_future_wait(f, -1);
            nqb_future_done(f, nq_future_result(f), p);
        }
        return NQ_OK;
    }

    nq_comm *c_;
    nq_id id_;
    nqb_events_state *events_;
    nqb_secret *secret_;
};

%}
