//! A transactional Kafka producer on librdkafka's C API, for the gateway's publish loop.
//!
//! The gateway publishes each group in one transaction (gateway/publish.py). With
//! confluent-kafka that is a Python call to `produce` per message, holding the GIL
//! (1.3-1.5 µs with the gateway's three headers, measured in isolation): 15% of the
//! served gateway's GIL time under bench/gateway's load (py-spy). Here the group's
//! messages are read once with the GIL and produced without it.
//!
//! It is the same librdkafka confluent-kafka ships and loaded (gateway/native.py finds
//! the file and passes its path), reached through `dlopen`/`dlsym` by its public C API
//! only: confluent-kafka's own objects are never touched. confluent-kafka stays the
//! reference and the fallback (gateway/publish.py), and makes the consumers and admin
//! clients.
//!
//! No delivery-report callback is set: a transaction's commit fails when any of its
//! messages failed, which is the outcome the gateway acts on.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::sync::Mutex;

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString};

use crate::message::Staged;

const RD_KAFKA_PRODUCER: c_int = 0;
const RD_KAFKA_CONF_OK: c_int = 0;
const RD_KAFKA_MSG_F_COPY: c_int = 0x2;
/// `RD_KAFKA_RESP_ERR__QUEUE_FULL`: the producer's queue is full; poll, then retry.
pub const QUEUE_FULL: c_int = -184;

// rd_kafka_vtype_t
const VTYPE_TOPIC: c_int = 1;
const VTYPE_VALUE: c_int = 4;
const VTYPE_KEY: c_int = 5;
const VTYPE_MSGFLAGS: c_int = 7;
const VTYPE_HEADER: c_int = 9;

#[repr(C)]
#[derive(Clone, Copy)]
struct Mem {
    ptr: *const c_void,
    size: usize,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Header {
    name: *const c_char,
    val: *const c_void,
    size: isize,
}

/// `rd_kafka_vu_t`'s union, padded to its 64 bytes.
#[repr(C)]
#[derive(Clone, Copy)]
union VuData {
    cstr: *const c_char,
    i: c_int,
    mem: Mem,
    header: Header,
    _pad: [u8; 64],
}

/// `rd_kafka_vu_t`: one argument of `rd_kafka_produceva`.
#[repr(C)]
#[derive(Clone, Copy)]
struct Vu {
    vtype: c_int,
    u: VuData,
}

type Rk = c_void;
type Conf = c_void;
type RdError = c_void;

extern "C" {
    fn dlopen(filename: *const c_char, flag: c_int) -> *mut c_void;
    fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
    fn dlerror() -> *const c_char;
}
const RTLD_NOW: c_int = 2;

/// The functions of librdkafka's C API this uses.
struct Api {
    conf_new: unsafe extern "C" fn() -> *mut Conf,
    conf_set:
        unsafe extern "C" fn(*mut Conf, *const c_char, *const c_char, *mut c_char, usize) -> c_int,
    conf_destroy: unsafe extern "C" fn(*mut Conf),
    new: unsafe extern "C" fn(c_int, *mut Conf, *mut c_char, usize) -> *mut Rk,
    destroy: unsafe extern "C" fn(*mut Rk),
    init_transactions: WaitingCall,
    begin_transaction: unsafe extern "C" fn(*mut Rk) -> *mut RdError,
    commit_transaction: WaitingCall,
    abort_transaction: WaitingCall,
    produceva: unsafe extern "C" fn(*mut Rk, *const Vu, usize) -> *mut RdError,
    poll: unsafe extern "C" fn(*mut Rk, c_int) -> c_int,
    flush: unsafe extern "C" fn(*mut Rk, c_int) -> c_int,
    metadata: unsafe extern "C" fn(*mut Rk, c_int, *mut c_void, *mut *const c_void, c_int) -> c_int,
    metadata_destroy: unsafe extern "C" fn(*const c_void),
    err2str: unsafe extern "C" fn(c_int) -> *const c_char,
    error_code: unsafe extern "C" fn(*const RdError) -> c_int,
    error_string: unsafe extern "C" fn(*const RdError) -> *const c_char,
    error_is_fatal: unsafe extern "C" fn(*const RdError) -> c_int,
    error_is_retriable: unsafe extern "C" fn(*const RdError) -> c_int,
    error_txn_requires_abort: unsafe extern "C" fn(*const RdError) -> c_int,
    error_destroy: unsafe extern "C" fn(*mut RdError),
}

/// An owned copy of a NUL-terminated C string (invalid UTF-8 replaced).
///
/// # Safety
/// `text` points to a NUL-terminated string that stays valid during the call.
unsafe fn c_text(text: *const c_char) -> String {
    CStr::from_ptr(text).to_string_lossy().into_owned()
}

fn last_dl_error() -> String {
    // SAFETY: dlerror returns NULL or a NUL-terminated message owned by libc.
    unsafe {
        let e = dlerror();
        if e.is_null() {
            "unknown error".to_owned()
        } else {
            c_text(e)
        }
    }
}

impl Api {
    fn load(library: &str) -> PyResult<Api> {
        let path = CString::new(library).map_err(|e| PyValueError::new_err(e.to_string()))?;
        // SAFETY: dlopen with a NUL-terminated path; the handle is never closed (the
        // library stays loaded for the process, as confluent-kafka keeps it anyway).
        let handle = unsafe { dlopen(path.as_ptr(), RTLD_NOW) };
        if handle.is_null() {
            return Err(PyOSError::new_err(format!(
                "cannot load librdkafka from {library}: {}",
                last_dl_error()
            )));
        }
        macro_rules! sym {
            ($name:literal) => {{
                let name = concat!($name, "\0");
                // SAFETY: a NUL-terminated symbol name on a live handle.
                let ptr = unsafe { dlsym(handle, name.as_ptr().cast()) };
                if ptr.is_null() {
                    return Err(PyOSError::new_err(format!(
                        "librdkafka at {library} has no {}: {}",
                        $name,
                        last_dl_error()
                    )));
                }
                // SAFETY: the field's type is the C signature rdkafka.h declares for the
                // symbol; a function pointer is the size of a data pointer here.
                unsafe { std::mem::transmute_copy(&ptr) }
            }};
        }
        Ok(Api {
            conf_new: sym!("rd_kafka_conf_new"),
            conf_set: sym!("rd_kafka_conf_set"),
            conf_destroy: sym!("rd_kafka_conf_destroy"),
            new: sym!("rd_kafka_new"),
            destroy: sym!("rd_kafka_destroy"),
            init_transactions: sym!("rd_kafka_init_transactions"),
            begin_transaction: sym!("rd_kafka_begin_transaction"),
            commit_transaction: sym!("rd_kafka_commit_transaction"),
            abort_transaction: sym!("rd_kafka_abort_transaction"),
            produceva: sym!("rd_kafka_produceva"),
            poll: sym!("rd_kafka_poll"),
            flush: sym!("rd_kafka_flush"),
            metadata: sym!("rd_kafka_metadata"),
            metadata_destroy: sym!("rd_kafka_metadata_destroy"),
            err2str: sym!("rd_kafka_err2str"),
            error_code: sym!("rd_kafka_error_code"),
            error_string: sym!("rd_kafka_error_string"),
            error_is_fatal: sym!("rd_kafka_error_is_fatal"),
            error_is_retriable: sym!("rd_kafka_error_is_retriable"),
            error_txn_requires_abort: sym!("rd_kafka_error_txn_requires_abort"),
            error_destroy: sym!("rd_kafka_error_destroy"),
        })
    }

    /// (code, text, fatal, retriable, txn_requires_abort) of an error, which it frees;
    /// None for no error.
    fn take_error(&self, error: *mut RdError) -> Option<ErrorInfo> {
        if error.is_null() {
            return None;
        }
        // SAFETY: a live rd_kafka_error_t, destroyed once after it is read.
        unsafe {
            let info = (
                (self.error_code)(error),
                c_text((self.error_string)(error)),
                (self.error_is_fatal)(error) != 0,
                (self.error_is_retriable)(error) != 0,
                (self.error_txn_requires_abort)(error) != 0,
            );
            (self.error_destroy)(error);
            Some(info)
        }
    }

    fn err_text(&self, code: c_int) -> String {
        // SAFETY: err2str returns a static NUL-terminated string for any code.
        unsafe { c_text((self.err2str)(code)) }
    }
}

/// An error as gateway/publish.py turns it into a confluent-kafka `KafkaError`.
type ErrorInfo = (c_int, String, bool, bool, bool);

/// The handle, moved into the calls made without the GIL.
#[derive(Clone, Copy)]
struct Handle(*mut Rk);
// SAFETY: librdkafka's handle is thread-safe; the object serialises its own use.
unsafe impl Send for Handle {}

impl Handle {
    /// The pointer (a method, so that a closure captures the whole `Handle`, which is Send).
    fn ptr(self) -> *mut Rk {
        self.0
    }
}

/// One message's arguments to `rd_kafka_produceva`, pointing into Python objects that
/// the caller keeps alive (`held`) until the call returns.
struct Args(Vec<Vu>);
// SAFETY: only raw pointers into objects held for the duration of the call.
unsafe impl Send for Args {}

/// A transactional producer: `TxnProducer(library, config)`.
#[pyclass]
pub struct TxnProducer {
    api: Api,
    /// The handle; null once closed (only `close`, which takes `&mut self`, sets it).
    rk: *mut Rk,
    /// NUL-terminated copies of the topic and header names seen, one per distinct text
    /// (found by the object first: the same ones come message after message), never
    /// removed, so that their pointers stay valid.
    names: Mutex<Vec<(Py<PyString>, CString)>>,
}

// SAFETY: librdkafka's handle may be used from any thread at once; `names` is locked.
unsafe impl Send for TxnProducer {}
unsafe impl Sync for TxnProducer {}

/// A transactional call that waits for the broker: (handle, timeout in ms) -> error.
type WaitingCall = unsafe extern "C" fn(*mut Rk, c_int) -> *mut RdError;

impl TxnProducer {
    fn live(&self) -> PyResult<Handle> {
        if self.rk.is_null() {
            return Err(PyValueError::new_err("the producer is closed"));
        }
        Ok(Handle(self.rk))
    }

    /// `f(handle, timeout_ms)` without the GIL; its error, if any.
    fn waiting_call(
        &self,
        py: Python<'_>,
        f: WaitingCall,
        timeout_ms: c_int,
    ) -> PyResult<Option<ErrorInfo>> {
        let h = self.live()?;
        // SAFETY: a live handle (see `live`).
        let e = py.allow_threads(move || Handle(unsafe { f(h.ptr(), timeout_ms) }));
        Ok(self.api.take_error(e.0))
    }
}

/// The arguments of a message the compiled core made (message.rs): its fields read in
/// place, without the attribute lookups and header tuples of an `OutgoingMessage`. The
/// pointers read from `m` and its header objects, which the caller holds.
fn message_args(
    names: &mut Vec<(Py<PyString>, CString)>,
    m: &Staged,
    py: Python<'_>,
) -> PyResult<Vec<Vu>> {
    let mut vu = head_args(names, m.topic.bind(py), m.value_bytes(), m.key_bytes())?;
    let set = m.header_set();
    let id = m.event_id.bind(py).to_str()?;
    vu.push(header_arg(
        c_name(names, set.event_id_name.bind(py))?,
        (id.as_ptr().cast(), id.len() as isize),
    ));
    for shared in &set.shared {
        // (name, value): both held by the tuple, which the message holds.
        let shared = shared.bind(py);
        let name = shared.get_item(0)?;
        let value = shared.get_item(1)?;
        vu.push(header_arg(
            c_name(names, name.downcast::<PyString>()?)?,
            header_value(&value)?,
        ));
    }
    Ok(vu)
}

/// The arguments every message starts with: its topic, the copy flag, its value and
/// key (if any). The pointers read from `value` and `key`, which the caller holds.
fn head_args(
    names: &mut Vec<(Py<PyString>, CString)>,
    topic: &Bound<'_, PyString>,
    value: &[u8],
    key: Option<&[u8]>,
) -> PyResult<Vec<Vu>> {
    let mut vu = Vec::with_capacity(7);
    vu.push(Vu {
        vtype: VTYPE_TOPIC,
        u: VuData {
            cstr: c_name(names, topic)?,
        },
    });
    vu.push(Vu {
        vtype: VTYPE_MSGFLAGS,
        u: VuData {
            i: RD_KAFKA_MSG_F_COPY,
        },
    });
    vu.push(bytes_arg(VTYPE_VALUE, value));
    if let Some(key) = key {
        vu.push(bytes_arg(VTYPE_KEY, key));
    }
    Ok(vu)
}

/// A header's value for `rd_kafka_produceva`: None as no value, bytes as they are, a
/// str as its UTF-8. The pointer reads from `value`, which the caller keeps alive.
fn header_value(value: &Bound<'_, PyAny>) -> PyResult<(*const c_void, isize)> {
    if value.is_none() {
        return Ok((std::ptr::null(), 0));
    }
    let bytes = match value.downcast::<PyBytes>() {
        Ok(b) => b.as_bytes(),
        Err(_) => value.downcast::<PyString>()?.to_str()?.as_bytes(),
    };
    Ok((bytes.as_ptr().cast(), bytes.len() as isize))
}

fn header_arg(name: *const c_char, (val, size): (*const c_void, isize)) -> Vu {
    Vu {
        vtype: VTYPE_HEADER,
        u: VuData {
            header: Header { name, val, size },
        },
    }
}

/// A `rd_kafka_produceva` argument pointing at bytes (the value or the key).
fn bytes_arg(vtype: c_int, bytes: &[u8]) -> Vu {
    Vu {
        vtype,
        u: VuData {
            mem: Mem {
                ptr: bytes.as_ptr().cast(),
                size: bytes.len(),
            },
        },
    }
}

/// The C string of a name, from the object itself when seen before.
fn c_name(
    names: &mut Vec<(Py<PyString>, CString)>,
    name: &Bound<'_, PyString>,
) -> PyResult<*const c_char> {
    if let Some((_, c)) = names.iter().find(|(n, _)| n.is(name)) {
        return Ok(c.as_ptr());
    }
    let text = name.to_str()?;
    // The same text in another object: its entry (one per distinct text, so the list is
    // as long as the application's topics and header names).
    if let Some((_, c)) = names
        .iter()
        .find(|(n, _)| n.bind(name.py()).to_str().ok() == Some(text))
    {
        return Ok(c.as_ptr());
    }
    let c = CString::new(text)
        .map_err(|_| PyValueError::new_err("a topic or header name holds a NUL character"))?;
    names.push((name.clone().unbind(), c));
    Ok(names.last().expect("just pushed").1.as_ptr())
}

#[pymethods]
impl TxnProducer {
    #[new]
    fn new(library: &str, config: Vec<(String, String)>) -> PyResult<Self> {
        let api = Api::load(library)?;
        let mut errstr = vec![0u8; 512];
        // SAFETY: a new configuration object, handed to rd_kafka_new (which then owns
        // it) or destroyed here on failure; every string is NUL-terminated.
        unsafe {
            let conf = (api.conf_new)();
            for (name, value) in &config {
                let (n, v) = (CString::new(name.as_str()), CString::new(value.as_str()));
                let (Ok(n), Ok(v)) = (n, v) else {
                    (api.conf_destroy)(conf);
                    return Err(PyValueError::new_err(format!(
                        "Kafka setting {name}: NUL character"
                    )));
                };
                let ok = (api.conf_set)(
                    conf,
                    n.as_ptr(),
                    v.as_ptr(),
                    errstr.as_mut_ptr().cast(),
                    errstr.len(),
                );
                if ok != RD_KAFKA_CONF_OK {
                    (api.conf_destroy)(conf);
                    let msg = c_text(errstr.as_ptr().cast());
                    return Err(PyValueError::new_err(format!(
                        "Kafka setting {name}: {msg}"
                    )));
                }
            }
            let rk = (api.new)(
                RD_KAFKA_PRODUCER,
                conf,
                errstr.as_mut_ptr().cast(),
                errstr.len(),
            );
            if rk.is_null() {
                (api.conf_destroy)(conf);
                let msg = c_text(errstr.as_ptr().cast());
                return Err(PyValueError::new_err(format!(
                    "cannot create a Kafka producer: {msg}"
                )));
            }
            Ok(TxnProducer {
                api,
                rk,
                names: Mutex::new(Vec::new()),
            })
        }
    }

    fn init_transactions(&self, py: Python<'_>, timeout_ms: c_int) -> PyResult<Option<ErrorInfo>> {
        self.waiting_call(py, self.api.init_transactions, timeout_ms)
    }

    fn begin_transaction(&self, py: Python<'_>) -> PyResult<Option<ErrorInfo>> {
        let h = self.live()?;
        let f = self.api.begin_transaction;
        // SAFETY: a live handle. A local state change, but under the client's lock, which
        // its own threads hold at times: it held the GIL 1.3% of the time under
        // bench/gateway's load (py-spy --gil), so it runs without it.
        let e = py.allow_threads(move || Handle(unsafe { f(h.ptr()) }));
        Ok(self.api.take_error(e.0))
    }

    fn commit_transaction(&self, py: Python<'_>, timeout_ms: c_int) -> PyResult<Option<ErrorInfo>> {
        self.waiting_call(py, self.api.commit_transaction, timeout_ms)
    }

    fn abort_transaction(&self, py: Python<'_>, timeout_ms: c_int) -> PyResult<Option<ErrorInfo>> {
        self.waiting_call(py, self.api.abort_transaction, timeout_ms)
    }

    /// Produce `messages[start:]` (objects with `topic`, `key`, `value`, `headers` as
    /// `gateway.record.OutgoingMessage` has them) into the open transaction, without the
    /// GIL. Returns (the index of the first message not produced, or len(messages);
    /// None, or the error that stopped it there: `QUEUE_FULL` means poll and go on).
    fn produce<'py>(
        &self,
        py: Python<'py>,
        messages: Bound<'py, PyList>,
        start: usize,
    ) -> PyResult<(usize, Option<ErrorInfo>)> {
        let h = self.live()?;
        let count = messages.len();
        // Every object a pointer reads from, held until the produce calls return.
        let mut held: Vec<Bound<'py, PyAny>> = Vec::with_capacity((count - start.min(count)) * 3);
        let mut args: Vec<Args> = Vec::with_capacity(count.saturating_sub(start));
        let mut names = self
            .names
            .lock()
            .expect("not poisoned: no panics while held");
        for i in start..count {
            let m = messages.get_item(i)?;
            if let Ok(core_made) = m.downcast_exact::<Staged>() {
                args.push(Args(message_args(&mut names, core_made.get(), py)?));
                held.push(m);
                continue;
            }
            let topic = m.getattr(intern!(py, "topic"))?;
            let value = m.getattr(intern!(py, "value"))?;
            let key = m.getattr(intern!(py, "key"))?;
            let key_bytes = if key.is_none() {
                None
            } else {
                Some(key.downcast::<PyBytes>()?.as_bytes())
            };
            let mut vu = head_args(
                &mut names,
                topic.downcast::<PyString>()?,
                value.downcast::<PyBytes>()?.as_bytes(),
                key_bytes,
            )?;
            held.push(value);
            held.push(key);
            let headers = m.getattr(intern!(py, "headers"))?;
            for header in headers.try_iter()? {
                let header = header?;
                let (name, value): (Bound<'py, PyString>, Bound<'py, PyAny>) = header.extract()?;
                vu.push(header_arg(
                    c_name(&mut names, &name)?,
                    header_value(&value)?,
                ));
                held.push(value);
            }
            args.push(Args(vu));
        }
        drop(names); // the pointers stay valid: names are never removed
        let f = self.api.produceva;
        // SAFETY: a live handle; every pointer reads from an object in `held` or a name
        // in `self.names`, both alive until after this returns; librdkafka copies them
        // (RD_KAFKA_MSG_F_COPY, and headers always).
        let (done, error) = py.allow_threads(move || {
            for (n, a) in args.iter().enumerate() {
                let e = unsafe { f(h.ptr(), a.0.as_ptr(), a.0.len()) };
                if !e.is_null() {
                    return (n, Handle(e));
                }
            }
            (args.len(), Handle(std::ptr::null_mut()))
        });
        drop(held);
        Ok((start + done, self.api.take_error(error.0)))
    }

    /// Serve the producer's queue for up to `timeout_ms`; how many events it served.
    fn poll(&self, py: Python<'_>, timeout_ms: c_int) -> PyResult<c_int> {
        let h = self.live()?;
        let f = self.api.poll;
        // SAFETY: a live handle.
        Ok(py.allow_threads(move || unsafe { f(h.ptr(), timeout_ms) }))
    }

    /// Wait up to `timeout_ms` for every queued message; None, or the error's text.
    fn flush(&self, py: Python<'_>, timeout_ms: c_int) -> PyResult<Option<(c_int, String)>> {
        let h = self.live()?;
        let f = self.api.flush;
        // SAFETY: a live handle.
        let code = py.allow_threads(move || unsafe { f(h.ptr(), timeout_ms) });
        Ok((code != 0).then(|| (code, self.api.err_text(code))))
    }

    /// Ask the cluster for its brokers (no topics), as a reachability check; None, or
    /// the error's code and text.
    fn ping(&self, py: Python<'_>, timeout_ms: c_int) -> PyResult<Option<(c_int, String)>> {
        let h = self.live()?;
        let (f, free) = (self.api.metadata, self.api.metadata_destroy);
        // SAFETY: a live handle; the metadata, when returned, is freed here.
        let code = py.allow_threads(move || unsafe {
            let mut md: *const c_void = std::ptr::null();
            let code = f(h.ptr(), 0, std::ptr::null_mut(), &mut md, timeout_ms);
            if code == 0 && !md.is_null() {
                free(md);
            }
            code
        });
        Ok((code != 0).then(|| (code, self.api.err_text(code))))
    }

    /// Destroy the handle (without the GIL: it waits for librdkafka's threads to end).
    fn close(&mut self, py: Python<'_>) {
        if self.rk.is_null() {
            return;
        }
        let (h, f) = (Handle(self.rk), self.api.destroy);
        self.rk = std::ptr::null_mut();
        // SAFETY: the handle was live and is not used after this.
        py.allow_threads(move || unsafe { f(h.ptr()) });
    }
}

impl Drop for TxnProducer {
    fn drop(&mut self) {
        if !self.rk.is_null() {
            // SAFETY: the handle is live and not used after this.
            unsafe { (self.api.destroy)(self.rk) };
        }
    }
}
