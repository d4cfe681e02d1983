//! The audit log's append loop (`AuditLog._commit_records` in audit/log.py), compiled.
//!
//! Per record the Python loop merges `seq`, `ts` and `prev` into a copy of the record,
//! encodes it as canonical JSON (orjson, sorted keys), hashes the line (RFC 6962 leaf),
//! appends the hash to the Merkle frontier and makes the next record's `prev`. It held
//! the GIL for all of it: 3.7-6.1 µs per gateway decision record (1.4 kB), about a
//! quarter of the served gateway's GIL time (py-spy --gil, bench/gateway's load). Here the
//! lines are written with the GIL held, each with a hole where its `prev` goes, and the
//! hashing, which must run in order (each `prev` is the hash of the line before), runs
//! with the GIL released (groups of 64 KiB and more), beside the event loop.
//!
//! `orjson.Fragment`s (the gateway's pre-encoded field decisions) are copied as orjson
//! copies them, read at the layout a probe confirmed at first use. A record already
//! encoded (`audit.log.CanonicalRecord`, or an event the gateway's core staged,
//! `fjordgate_native.Staged`) is copied, with `prev`, `seq` and `ts` spliced in at its
//! cuts.
//!
//! Whatever this encoder does not write exactly as orjson does (floats it cannot
//! reproduce, integers beyond 64 bits, subclasses, non-string keys, strings with lone
//! surrogates, nesting deeper than orjson allows) makes it return None, and the Python
//! loop encodes the batch instead. tests/audit/test_audit_native_chain.py holds both to the
//! same bytes.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple, PyType};
use sha2::{Digest, Sha256};

use crate::message::Staged;
use crate::{
    float_text, kind, write_str, SlotClass, HEX, T_BOOL, T_DICT, T_FLOAT, T_INT, T_LIST, T_NONE,
    T_STR,
};

/// A part of an audit record the core encoded: one its decision shares, or the event's
/// own (its id, its pseudonyms), in order.
pub enum Piece {
    Shared(Py<PyBytes>),
    Own,
}

const LEAF_PREFIX: u8 = 0x00;
const NODE_PREFIX: u8 = 0x01;
/// orjson refuses nesting deeper than this (`RecursionError` → TypeError in its terms).
const MAX_DEPTH: usize = 254;

/// Write `value` as `orjson.dumps(value, option=OPT_SORT_KEYS)` would; false if this
/// encoder does not reproduce orjson's bytes for it (nothing useful is left in `out`).
pub(crate) fn write_value(value: &Bound<'_, PyAny>, out: &mut Vec<u8>, depth: usize) -> bool {
    match kind(value) {
        T_STR => match value.downcast::<PyString>().map(|s| s.to_str()) {
            Ok(Ok(text)) => {
                write_str(text, out);
                true
            }
            _ => false, // lone surrogates: orjson raises, the Python loop says so
        },
        T_INT => {
            if let Ok(n) = value.extract::<i64>() {
                out.extend_from_slice(n.to_string().as_bytes());
            } else if let Ok(n) = value.extract::<u64>() {
                out.extend_from_slice(n.to_string().as_bytes());
            } else {
                return false; // beyond 64 bits: orjson raises
            }
            true
        }
        T_FLOAT => match value.extract::<f64>().ok().and_then(float_text) {
            Some(text) => {
                out.extend_from_slice(text.as_bytes());
                true
            }
            None => false,
        },
        T_BOOL => {
            out.extend_from_slice(if value.is_truthy().unwrap_or(false) {
                b"true"
            } else {
                b"false"
            });
            true
        }
        T_NONE => {
            out.extend_from_slice(b"null");
            true
        }
        T_DICT => {
            depth < MAX_DEPTH
                && write_dict(
                    value.downcast::<PyDict>().expect("a dict"),
                    &[],
                    out,
                    depth + 1,
                )
                .is_some()
        }
        T_LIST => {
            depth < MAX_DEPTH
                && write_items(
                    value.downcast::<PyList>().expect("a list").iter(),
                    out,
                    depth + 1,
                )
        }
        _ => {
            if let Ok(tuple) = value.downcast_exact::<PyTuple>() {
                return depth < MAX_DEPTH && write_items(tuple.iter(), out, depth + 1);
            }
            match fragment_contents(value) {
                // orjson writes a fragment's contents as they are.
                Some(contents) => {
                    if let Ok(bytes) = contents.downcast_exact::<PyBytes>() {
                        out.extend_from_slice(bytes.as_bytes());
                    } else if let Ok(Ok(text)) =
                        contents.downcast_exact::<PyString>().map(|s| s.to_str())
                    {
                        out.extend_from_slice(text.as_bytes());
                    } else {
                        return false;
                    }
                    true
                }
                None => false,
            }
        }
    }
}

/// The layout of an `orjson.Fragment` (orjson's src/ffi/fragment.rs, a GIL build).
#[repr(C)]
struct FragmentObject {
    ob_base: pyo3::ffi::PyObject,
    contents: *mut pyo3::ffi::PyObject,
}

/// `orjson.Fragment`, once a probe confirmed its layout; None if it did not (then a
/// record holding a fragment goes to the Python loop, which orjson encodes).
static FRAGMENT: GILOnceCell<Option<Py<PyType>>> = GILOnceCell::new();

fn probe_fragment(py: Python<'_>) -> Option<Py<PyType>> {
    let cls = py
        .import("orjson")
        .ok()?
        .getattr("Fragment")
        .ok()?
        .downcast_into::<PyType>()
        .ok()?;
    let contents = PyBytes::new(py, b"[\"probe\"]");
    let fragment = cls.call1((&contents,)).ok()?;
    // SAFETY: the type's instances are at least as large as the layout read (checked
    // first); the pointer read is compared, not dereferenced.
    let same = unsafe {
        let size = (*cls.as_type_ptr()).tp_basicsize;
        usize::try_from(size).is_ok_and(|n| n >= std::mem::size_of::<FragmentObject>())
            && (*fragment.as_ptr().cast::<FragmentObject>()).contents == contents.as_ptr()
    };
    same.then(|| cls.unbind())
}

fn fragment_contents<'py>(value: &Bound<'py, PyAny>) -> Option<Bound<'py, PyAny>> {
    let py = value.py();
    let cls = FRAGMENT.get_or_init(py, || probe_fragment(py)).as_ref()?;
    if !value.get_type().is(cls.bind(py)) {
        return None;
    }
    // SAFETY: an exact orjson.Fragment with the probed layout; its contents live as long
    // as the fragment, which the caller holds.
    unsafe {
        let contents = (*value.as_ptr().cast::<FragmentObject>()).contents;
        (!contents.is_null()).then(|| Bound::from_borrowed_ptr(py, contents))
    }
}

fn write_items<'py>(
    items: impl Iterator<Item = Bound<'py, PyAny>>,
    out: &mut Vec<u8>,
    depth: usize,
) -> bool {
    out.push(b'[');
    let mut first = true;
    for item in items {
        if !first {
            out.push(b',');
        }
        first = false;
        if !write_value(&item, out, depth) {
            return false;
        }
    }
    out.push(b']');
    true
}

/// An object member this encoder adds to a record (`seq`, `ts`; `prev` is a hole).
enum Extra<'a> {
    Int(u64),
    Str(&'a str),
    Hole,
}

/// The members the log adds to record `seq` of a group, in sorted order (the order of a
/// `CanonicalRecord`'s cuts).
fn log_members(seq: u64, ts: &str) -> [(&'static str, Extra<'_>); 3] {
    [
        ("prev", Extra::Hole),
        ("seq", Extra::Int(seq)),
        ("ts", Extra::Str(ts)),
    ]
}

/// Write an extra member's value; returns the hole's offset for `Extra::Hole`.
fn write_extra(value: &Extra<'_>, out: &mut Vec<u8>) -> Option<usize> {
    match value {
        Extra::Int(v) => out.extend_from_slice(v.to_string().as_bytes()),
        Extra::Str(s) => write_str(s, out),
        Extra::Hole => {
            out.push(b'"');
            let hole = out.len();
            out.extend_from_slice(&[b'0'; 64]);
            out.push(b'"');
            return Some(hole);
        }
    }
    None
}

/// Write a dict with its keys sorted, `extra` members merged in (a key of the dict that
/// is also an extra is not reached: the log rejects such records before). Returns the
/// offset of the hole's first byte (or 0 if there is none), None if not reproducible.
fn write_dict(
    dict: &Bound<'_, PyDict>,
    extra: &[(&str, Extra<'_>)],
    out: &mut Vec<u8>,
    depth: usize,
) -> Option<usize> {
    let mut members: Vec<(Bound<'_, PyString>, Bound<'_, PyAny>)> = Vec::with_capacity(dict.len());
    for (key, value) in dict.iter() {
        members.push((key.downcast_exact::<PyString>().ok()?.clone(), value));
    }
    let mut keys: Vec<(&str, usize)> = Vec::with_capacity(members.len() + extra.len());
    for (n, (key, _)) in members.iter().enumerate() {
        keys.push((key.to_str().ok()?, n));
    }
    for (n, (key, _)) in extra.iter().enumerate() {
        keys.push((key, members.len() + n));
    }
    // orjson's OPT_SORT_KEYS: by the keys' UTF-8 bytes (held to it by the tests).
    keys.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut hole = 0;
    out.push(b'{');
    for (i, (key, n)) in keys.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(key, out);
        out.push(b':');
        if let Some((_, value)) = members.get(*n) {
            if !write_value(value, out, depth) {
                return None;
            }
        } else if let Some(at) = write_extra(&extra[n - members.len()].1, out) {
            hole = at;
        }
    }
    out.push(b'}');
    Some(hole)
}

/// Write an encoded record (its `parts` joined, without the log's members) with each of
/// `extra` (`log_members`: `prev`, a hole, `seq` and `ts`) before the part its cut names;
/// returns the hole's offset, or None if a cut is not a place for a member. A comma goes before a spliced
/// member unless it opens the object or follows a comma, and after it when a member of
/// the record follows at once. A member goes only before a `,` or the `}`, or before a
/// key's `"` where it opens the object or follows a comma.
fn splice(
    parts: &[&[u8]],
    cuts: [usize; 3],
    extra: &[(&str, Extra<'_>); 3],
    out: &mut Vec<u8>,
) -> Option<usize> {
    let start = out.len();
    let mut hole = 0;
    let mut from = 0;
    for (cut, (name, value)) in cuts.into_iter().zip(extra) {
        if cut < from || cut > parts.len() {
            return None;
        }
        for part in &parts[from..cut] {
            out.extend_from_slice(part);
        }
        from = cut;
        let next = parts[cut..].iter().find_map(|p| p.first().copied());
        // Whether the member starts the object or follows a comma (a member's `"` may
        // come next then, and only then).
        let opens = match out[start..].last() {
            Some(b'{' | b',') => true,
            Some(_) => {
                out.push(b',');
                false
            }
            None => return None,
        };
        match next {
            Some(b',' | b'}') => {}
            Some(b'"') if opens => {}
            _ => return None,
        }
        write_str(name, out);
        out.push(b':');
        if let Some(at) = write_extra(value, out) {
            hole = at;
        }
        if next == Some(b'"') {
            out.push(b',');
        }
    }
    for part in &parts[from..] {
        out.extend_from_slice(part);
    }
    (out.last() == Some(&b'}')).then_some(hole)
}

fn hex_into(digest: &[u8], out: &mut [u8]) {
    for (i, b) in digest.iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 15)];
    }
}

/// The lines, the records' leaf hashes in hex (64 characters each, one after the other),
/// the Merkle frontier's new stack.
type Chained<'py> = (
    Bound<'py, PyBytes>,
    Bound<'py, PyBytes>,
    Vec<Bound<'py, PyBytes>>,
);

thread_local! {
    /// The lines of the thread's last group, kept for the next one: a group's megabytes
    /// in new memory each time cost page faults and zeroed pages (perf, bench/gateway).
    static LINES: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// The thread's lines buffer, given back to it when dropped (at most 64 MiB is kept).
struct Lines(Vec<u8>);

impl Lines {
    fn take() -> Self {
        let mut out = LINES.with(std::cell::Cell::take);
        out.clear();
        Lines(out)
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        let out = std::mem::take(&mut self.0);
        if out.capacity() <= 64 << 20 {
            LINES.with(|cell| cell.set(out));
        }
    }
}

/// Encode and chain a group of audit records as `AuditLog._commit_records` does: each
/// record with `seq` (from `seq`), `ts` and `prev` (the hex leaf hash of the line before,
/// `prev` for the first), as canonical JSON lines each ended by a newline; each line's
/// leaf hash appended to the Merkle frontier of the `seq` records before, given by its
/// perfect-subtree roots `stack` (largest first).
///
/// A record of the exact class `canonical` (`audit.log.CanonicalRecord`: `parts`, `cuts`)
/// is copied with the log's members spliced in.
///
/// Returns (the lines, the records' leaf hashes in hex one after the other (64 bytes
/// each, not a str per record), the frontier's new stack), or None
/// when a record is not an exact dict or `canonical` or holds a value this encoder does
/// not write as orjson does: the caller then runs the Python loop on the whole group.
#[pyfunction]
#[pyo3(name = "chain_records", signature = (records, seq, ts, prev, stack, canonical = None))]
pub fn chain_records<'py>(
    py: Python<'py>,
    records: &Bound<'py, PyList>,
    seq: u64,
    ts: &str,
    prev: &str,
    stack: Vec<Vec<u8>>,
    canonical: Option<Bound<'py, PyType>>,
) -> PyResult<Option<Chained<'py>>> {
    if prev.len() != 64
        || !prev.bytes().all(|b| b.is_ascii_hexdigit())
        || stack.len() != seq.count_ones() as usize
        || stack.iter().any(|s| s.len() != 32)
    {
        return Ok(None);
    }
    let mut lines_buf = Lines::take();
    let out = &mut lines_buf.0;
    out.reserve(records.len() * 512);
    // (line start, hole, line end without its newline) per record
    let mut lines: Vec<(usize, usize, usize)> = Vec::with_capacity(records.len());
    let canonical = match canonical {
        Some(cls) => Some(SlotClass::new(cls, vec!["parts".into(), "cuts".into()])?),
        None => None,
    };
    for (n, record) in records.iter().enumerate() {
        let extra = log_members(seq + n as u64, ts);
        // A record already encoded: an event the gateway's core staged (its parts read
        // in place), or a `CanonicalRecord` (a tuple of bytes objects).
        let mut held = Vec::new();
        let encoded = if let Ok(staged) = record.downcast_exact::<Staged>() {
            let Some(encoded) = staged.get().audit_parts(py) else {
                return Ok(None);
            };
            Some(encoded)
        } else if let Some(slots) = canonical.as_ref().and_then(|c| c.instance(&record)) {
            let Some(cuts) = slots.get(1).and_then(|c| c.extract::<[usize; 3]>().ok()) else {
                return Ok(None);
            };
            let Some(Ok(parts)) = slots.get(0).map(Bound::downcast_into_exact::<PyTuple>) else {
                return Ok(None);
            };
            for part in parts.iter() {
                let Ok(part) = part.downcast_into_exact::<PyBytes>() else {
                    return Ok(None);
                };
                held.push(part);
            }
            Some((cuts, held.iter().map(|p| p.as_bytes()).collect()))
        } else {
            None
        };
        if let Some((cuts, bytes)) = encoded {
            let start = out.len();
            let Some(hole) = splice(&bytes, cuts, &extra, out) else {
                return Ok(None);
            };
            lines.push((start, hole, out.len()));
            out.push(b'\n');
            continue;
        }
        let Ok(dict) = record.downcast_exact::<PyDict>() else {
            return Ok(None);
        };
        // Not reached from the log, which rejects such records first; the Python loop's
        // `{**record, "seq": ...}` would overwrite them.
        for name in [intern!(py, "seq"), intern!(py, "ts"), intern!(py, "prev")] {
            if dict.contains(name)? {
                return Ok(None);
            }
        }
        let start = out.len();
        let Some(hole) = write_dict(dict, &extra, out, 1) else {
            return Ok(None);
        };
        lines.push((start, hole, out.len()));
        out.push(b'\n');
    }
    let first_prev = prev.as_bytes().to_vec();
    let release = out.len() >= crate::RELEASE_GIL_BYTES;
    let hash = move || {
        let mut stack = stack;
        let mut prev = first_prev;
        let mut hexes = Vec::with_capacity(lines.len() * 64);
        for (size, &(start, hole, end)) in (seq + 1..).zip(&lines) {
            out[hole..hole + 64].copy_from_slice(&prev);
            let line = &out[start..end];
            let mut hasher = Sha256::new();
            hasher.update([LEAF_PREFIX]);
            hasher.update(line);
            let leaf: [u8; 32] = hasher.finalize().into();
            hex_into(&leaf, &mut prev);
            hexes.extend_from_slice(&prev);
            // Each trailing zero bit of the new size closes one perfect subtree.
            let mut node = leaf;
            let mut bits = size;
            while bits & 1 == 0 {
                let left = stack.pop().expect("a subtree per set bit");
                let mut hasher = Sha256::new();
                hasher.update([NODE_PREFIX]);
                hasher.update(&left);
                hasher.update(node);
                node = hasher.finalize().into();
                bits >>= 1;
            }
            stack.push(node.to_vec());
        }
        (hexes, stack)
    };
    // A small group is hashed with the GIL held: giving it up and taking it back can wait
    // for another thread's switch interval (5 ms), longer than the hashing.
    let (hexes, stack) = if release {
        py.allow_threads(hash)
    } else {
        hash()
    };
    let stack = stack.iter().map(|s| PyBytes::new(py, s)).collect();
    Ok(Some((
        PyBytes::new(py, &lines_buf.0),
        PyBytes::new(py, &hexes),
        stack,
    )))
}
