//! fjordgate's compiled fast path for the gateway pipeline.
//!
//! The Python steps (gateway/steps.py) are the reference; this module runs the
//! same steps for the common case only: a flat event whose decision the
//! pipeline has already memoised by its shape (`DecisionShapes`), with a plan
//! of keep, drop, pseudonymise and redact. It reads the memoised decisions, the
//! Python objects the decide step keeps; scans, pseudonyms and span redactions
//! it caches itself (`TextCache`, bounded as the steps' caches are), looked up
//! by text without a Python string. The shipped
//! detector's scan (`detector`), the shipped pseudonymiser's HMAC (`Op::Hmac`)
//! and the shipped redactor (`redact_spans`) it computes itself. Records,
//! messages and findings it reads and writes at their slots (`SlotClass`).
//!
//! A record is either done here completely or left untouched for the Python
//! steps: every check runs before the first change to the record, and any case
//! not covered (a rejection, an unknown shape, a nested field, an event time
//! that is not plain ISO 8601, an exception) sends it back. The differential
//! tests in tests/gateway/test_native.py hold the two paths to the same bytes.
//!
//! Why compiled code at all: bench/gateway measured the Python pipeline at 8 to
//! 16 times `orjson.loads` + `orjson.dumps` of the same event, nearly all of
//! it interpreter work per field; the goal is 3 times.

/// Work on at least this many bytes runs with the GIL released; below it, it holds the
/// GIL: taking the GIL back can wait for another thread's switch interval (5 ms), far
/// longer than hashing a few records (about 1 µs each). hashlib draws the same kind of
/// line at 2 KiB for one hash. Chosen by that reasoning, not measured: at bench/gateway's
/// loads the groups and bodies are larger (100 to 2,000 events).
const RELEASE_GIL_BYTES: usize = 64 * 1024;

mod audit;
mod batch;
mod detector;
mod idindex;
mod kafka;
mod message;

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple, PyType};

const T_STR: u8 = 1;
const T_INT: u8 = 2;
const T_FLOAT: u8 = 4;
const T_BOOL: u8 = 8;
const T_DICT: u8 = 16;
const T_LIST: u8 = 32;
const T_NONE: u8 = 64;
const T_OTHER: u8 = 128;

/// The JSON kind of a value as `orjson.loads` makes it (exact types only).
fn kind(value: &Bound<'_, PyAny>) -> u8 {
    if value.is_exact_instance_of::<PyString>() {
        T_STR
    } else if value.is_exact_instance_of::<PyFloat>() {
        T_FLOAT
    } else if value.is_exact_instance_of::<PyInt>() {
        T_INT
    } else if value.is_exact_instance_of::<PyBool>() {
        T_BOOL
    } else if value.is_none() {
        T_NONE
    } else if value.is_exact_instance_of::<PyDict>() {
        T_DICT
    } else if value.is_exact_instance_of::<PyList>() {
        T_LIST
    } else {
        T_OTHER
    }
}

fn mask_of(name: &str) -> PyResult<u8> {
    Ok(match name {
        "any" => 0,
        "string" => T_STR,
        "integer" => T_INT,
        "number" => T_INT | T_FLOAT,
        "boolean" => T_BOOL,
        "object" => T_DICT,
        "array" => T_LIST,
        other => {
            return Err(PyValueError::new_err(format!(
                "unknown field type {other:?}"
            )))
        }
    })
}

fn two_digits(b: &[u8]) -> Option<u32> {
    if b.len() == 2 && b[0].is_ascii_digit() && b[1].is_ascii_digit() {
        Some(u32::from(b[0] - b'0') * 10 + u32::from(b[1] - b'0'))
    } else {
        None
    }
}

/// Whether `text` is an ISO 8601 time with a zone that Python's
/// `datetime.fromisoformat` accepts: `YYYY-MM-DDTHH:MM:SS[.fff|.ffffff](Z|±HH:MM)`.
/// False means "not sure", never "invalid": the Python step decides those.
pub fn iso_with_zone(text: &[u8]) -> bool {
    if text.len() < 20 {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| text[r].iter().all(u8::is_ascii_digit);
    if !digits(0..4) || text[4] != b'-' || text[7] != b'-' || text[10] != b'T' {
        return false;
    }
    let year: u32 = text[0..4]
        .iter()
        .fold(0, |n, d| n * 10 + u32::from(d - b'0'));
    let (Some(month), Some(day)) = (two_digits(&text[5..7]), two_digits(&text[8..10])) else {
        return false;
    };
    let leap = (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    if year == 0 || day == 0 || day > days {
        return false;
    }
    if text[13] != b':' || text[16] != b':' {
        return false;
    }
    let (Some(h), Some(m), Some(s)) = (
        two_digits(&text[11..13]),
        two_digits(&text[14..16]),
        two_digits(&text[17..19]),
    ) else {
        return false;
    };
    if h > 23 || m > 59 || s > 59 {
        return false;
    }
    let mut rest = &text[19..];
    if rest.first() == Some(&b'.') {
        let n = rest[1..].iter().take_while(|b| b.is_ascii_digit()).count();
        if n != 3 && n != 6 {
            return false;
        }
        rest = &rest[1 + n..];
    }
    match rest {
        b"Z" => true,
        [sign, hh @ .., b':', m1, m2] if (*sign == b'+' || *sign == b'-') && hh.len() == 2 => {
            matches!((two_digits(hh), two_digits(&[*m1, *m2])), (Some(oh), Some(om)) if oh <= 23 && om <= 59)
        }
        _ => false,
    }
}

/// One value of a flat event: JSON text as `orjson.dumps` writes it, or a string's content.
enum Val<'a> {
    Str(Cow<'a, str>),
    Int(Cow<'a, str>),
    Float(Cow<'a, str>),
    Bool(bool),
    Null,
}

impl Val<'_> {
    fn kind(&self) -> u8 {
        match self {
            Val::Str(_) => T_STR,
            Val::Int(_) => T_INT,
            Val::Float(_) => T_FLOAT,
            Val::Bool(_) => T_BOOL,
            Val::Null => T_NONE,
        }
    }

    /// As `orjson.dumps` writes it.
    fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            Val::Str(s) => write_str(s, out),
            Val::Int(t) | Val::Float(t) => out.extend_from_slice(t.as_bytes()),
            Val::Bool(true) => out.extend_from_slice(b"true"),
            Val::Bool(false) => out.extend_from_slice(b"false"),
            Val::Null => out.extend_from_slice(b"null"),
        }
    }
}

/// A JSON string as orjson writes it: `"` and `\` escaped, control characters as
/// `\b \t \n \f \r` or `\u00xx`, everything else as UTF-8.
fn write_str(s: &str, out: &mut Vec<u8>) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0; // the first byte not yet written
    let mut i = 0;
    while i < bytes.len() {
        // Eight bytes at a time while none needs escaping (nearly every string): the byte
        // loop alone was a tenth of the core's instructions (callgrind, bench events).
        if let Some(word) = bytes.get(i..i + 8) {
            if !needs_escape(u64::from_le_bytes(word.try_into().expect("eight bytes"))) {
                i += 8;
                continue;
            }
        }
        let b = bytes[i];
        let escaped: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            0x0c => b"\\f",
            b'\r' => b"\\r",
            0..=0x1f => b"",
            _ => {
                i += 1;
                continue;
            }
        };
        out.extend_from_slice(&bytes[start..i]);
        if escaped.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 15)]);
        } else {
            out.extend_from_slice(escaped);
        }
        i += 1;
        start = i;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Lower-case hex digits, for `\u00XX` escapes and hex digests.
const HEX: &[u8; 16] = b"0123456789abcdef";

/// The first index from `j` where the 8-byte word holding it has a byte that
/// `needs_escape` (or fewer than 8 bytes remain): the plain run of a JSON string is
/// skipped eight bytes at a time (nearly every string is all plain).
#[inline]
fn plain_run_end(b: &[u8], mut j: usize) -> usize {
    while let Some(word) = b.get(j..j + 8) {
        if needs_escape(u64::from_le_bytes(word.try_into().expect("eight bytes"))) {
            break;
        }
        j += 8;
    }
    j
}

/// Whether a byte of `word` is below 0x20, `"` or `\`. Exact, not a filter: the "has a
/// byte less than n" and "has a zero byte" word tricks (bytes of 0x80 and above included).
#[inline]
fn needs_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below = word.wrapping_sub(ONES * 0x20) & !word;
    let quote = word ^ (ONES * u64::from(b'"'));
    let quote = quote.wrapping_sub(ONES) & !quote;
    let backslash = word ^ (ONES * u64::from(b'\\'));
    let backslash = backslash.wrapping_sub(ONES) & !backslash;
    (below | quote | backslash) & HIGH != 0
}

/// An integer token that orjson writes back as is (`-0` is written `0`: not taken).
fn int_token(t: &str) -> Option<&str> {
    let digits = t.strip_prefix('-').unwrap_or(t);
    if digits.is_empty() || digits.len() > 18 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if t == "-0" || (digits.len() > 1 && digits.starts_with('0')) {
        return None;
    }
    Some(t)
}

/// A decimal token (no exponent) as orjson writes the float it parses to: taken only where
/// that is the token with its fraction's trailing zeros trimmed, which holds for at most
/// 15 significant digits and 1e-4 <= |x| < 1e15 (or zero). Others: None.
fn float_token(t: &str) -> Option<Cow<'_, str>> {
    let body = t.strip_prefix('-').unwrap_or(t);
    let (int, frac) = body.split_once('.')?;
    if int.is_empty()
        || frac.is_empty()
        || int.len() > 15
        || (int.len() > 1 && int.starts_with('0'))
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let frac_trimmed = frac.trim_end_matches('0');
    let int_sig = int.trim_start_matches('0');
    let significant = if int_sig.is_empty() {
        let lead = frac_trimmed.len() - frac_trimmed.trim_start_matches('0').len();
        if !frac_trimmed.is_empty() && lead > 3 {
            return None; // below 1e-4: orjson may write an exponent
        }
        frac_trimmed.len() - lead
    } else {
        int_sig.len() + frac_trimmed.len()
    };
    if significant > 15 {
        return None;
    }
    if frac_trimmed.len() == frac.len() {
        return Some(Cow::Borrowed(t));
    }
    let keep = frac_trimmed.len().max(1);
    let cut = t.len() - frac.len() + keep;
    Some(Cow::Borrowed(&t[..cut]))
}

/// A float from a Python object as orjson writes it, in the same range as `float_token`.
fn float_text(x: f64) -> Option<String> {
    if !x.is_finite() || (x != 0.0 && !(1e-4..1e15).contains(&x.abs())) {
        return None;
    }
    let mut text = format!("{x}");
    if !text.contains('.') {
        text.push_str(".0");
    }
    Some(text)
}

/// A raw JSON value's token, if the core takes it (a string without escapes, a plain
/// number, true, false, null; not an object or array).
// Inlined: its 32-byte value came back through memory, and perf put a third of the
// caller's own samples on reading it back.
#[inline(always)]
fn raw_val(token: &str) -> Option<Val<'_>> {
    let first = *token.as_bytes().first()?;
    match first {
        b'"' => {
            let content = &token[1..token.len() - 1];
            if content.contains('\\') {
                None
            } else {
                Some(Val::Str(Cow::Borrowed(content)))
            }
        }
        b't' => Some(Val::Bool(true)),
        b'f' => Some(Val::Bool(false)),
        b'n' => Some(Val::Null),
        b'{' | b'[' => None,
        _ => {
            if token.contains(['.', 'e', 'E']) {
                float_token(token).map(Val::Float)
            } else {
                int_token(token).map(|t| Val::Int(Cow::Borrowed(t)))
            }
        }
    }
}

/// A value of a parsed event (a JSON-array batch), if the core takes it; a string's
/// text borrowed from the Python string.
fn py_val<'a>(value: &'a Bound<'_, PyAny>) -> Option<Val<'a>> {
    match kind(value) {
        T_STR => Some(Val::Str(Cow::Borrowed(
            value.downcast::<PyString>().ok()?.to_str().ok()?,
        ))),
        T_INT => Some(Val::Int(Cow::Owned(
            value.extract::<i64>().ok()?.to_string(),
        ))),
        T_FLOAT => float_text(value.extract::<f64>().ok()?).map(|t| Val::Float(Cow::Owned(t))),
        T_BOOL => Some(Val::Bool(value.is_truthy().ok()?)),
        T_NONE => Some(Val::Null),
        _ => None,
    }
}

/// The members of a flat JSON object in order, each name and value token as written
/// (borrowed from `text`), when `text` is exactly one object whose names are strings
/// without escapes and whose values are strings without escapes, numbers, `true`,
/// `false` or `null` (RFC 8259, whitespace included). None for anything else: nested
/// values, escapes, invalid JSON, which the steps take. Written for the one shape the
/// core takes, in place of serde_json's general parser (5.7% of the pipeline's time under
/// perf, bench events). The text is UTF-8 already (`str`). Held to orjson by
/// tests/gateway/test_native.py.
fn flat_members(text: &str) -> Option<Vec<(&str, &str)>> {
    let b = text.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    let mut members = Vec::with_capacity(8);
    i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b'}') {
        return (skip_ws(b, i + 1) == b.len()).then_some(members);
    }
    loop {
        let name_end = string_end(b, i)?;
        let name = &text[i + 1..name_end - 1];
        i = skip_ws(b, name_end);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(b, i + 1);
        let value_end = match *b.get(i)? {
            b'"' => string_end(b, i)?,
            b't' => literal_end(b, i, b"true")?,
            b'f' => literal_end(b, i, b"false")?,
            b'n' => literal_end(b, i, b"null")?,
            b'-' | b'0'..=b'9' => number_end(b, i)?,
            _ => return None, // an object, an array, or not JSON
        };
        members.push((name, &text[i..value_end]));
        i = skip_ws(b, value_end);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b'}') => return (skip_ws(b, i + 1) == b.len()).then_some(members),
            _ => return None,
        }
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = b.get(i) {
        i += 1;
    }
    i
}

/// The end (after the closing quote) of the string starting at `b[i]`, if it is one
/// without escapes or control characters.
fn string_end(b: &[u8], i: usize) -> Option<usize> {
    if b.get(i) != Some(&b'"') {
        return None;
    }
    // Eight bytes at a time up to the word holding the quote (or an escape).
    let mut j = plain_run_end(b, i + 1);
    loop {
        match *b.get(j)? {
            b'"' => return Some(j + 1),
            b'\\' | 0..=0x1f => return None,
            _ => j += 1,
        }
    }
}

fn literal_end(b: &[u8], i: usize, literal: &[u8]) -> Option<usize> {
    b[i..].starts_with(literal).then_some(i + literal.len())
}

/// The end of the number starting at `b[i]`: `-? (0 | [1-9][0-9]*) (.[0-9]+)? ([eE][+-]?[0-9]+)?`.
fn number_end(b: &[u8], mut i: usize) -> Option<usize> {
    let digits = |mut j: usize| {
        let from = j;
        while b.get(j).is_some_and(u8::is_ascii_digit) {
            j += 1;
        }
        (j > from).then_some(j)
    };
    if b[i] == b'-' {
        i += 1;
    }
    i = match b.get(i)? {
        b'0' => i + 1,
        b'1'..=b'9' => digits(i)?,
        _ => return None,
    };
    if b.get(i) == Some(&b'.') {
        i = digits(i + 1)?;
    }
    if let Some(b'e' | b'E') = b.get(i) {
        i += 1;
        if let Some(b'+' | b'-') = b.get(i) {
            i += 1;
        }
        i = digits(i)?;
    }
    Some(i)
}

/// A `Pseudonymiser`'s pseudonym of `value`: `prefix` + unpadded base64url of the
/// HMAC-SHA-256 (from the key's precomputed state `mac`) of the value's UTF-8.
fn hmac_token<'py>(
    py: Python<'py>,
    mac: &Hmac<Sha256>,
    prefix: &str,
    value: &str,
) -> Bound<'py, PyString> {
    let mut mac = mac.clone();
    mac.update(value.as_bytes());
    let mut token = String::with_capacity(prefix.len() + 43);
    token.push_str(prefix);
    URL_SAFE_NO_PAD.encode_string(mac.finalize().into_bytes(), &mut token);
    PyString::new(py, &token)
}

// foldhash's quality hasher, seeded per process, not std's SipHash-1-3: three lookups
// per event hashed with SipHash were 3.7% of the pipeline's time (perf, bench events).
// The texts are the producers' (plates, ids, notes): the seed is random per process, so
// colliding texts cannot be crafted without it.
type TextMap<T> = HashMap<Box<str>, Py<T>, foldhash::quality::RandomState>;

/// A bounded cache from a text to a Python object, kept by the core for what the steps
/// keep in Python dicts (a pseudonymiser's pseudonyms, a tag field's scans, span
/// redactions): texts go in `current`; when it holds half the bound it becomes
/// `previous` (the one before is emptied, its table kept for the next), and a text
/// found there moves back. Looked up by the text itself, without a Python string per
/// lookup. Against the Python dicts it replaced, in alternating processes: pseudonyms
/// 0.92-0.93x the time per event (two lookups per event), scans 0.89x, redactions
/// 0.75-0.87x.
///
/// A text is kept from its second miss on: the first only leaves its hash in `seen`
/// (a doorkeeper, as in TinyLFU caches). Free text is often seen once (most of the
/// bench's notes hold a new phone number): kept, each cost a copy of the text, a slot,
/// its objects held until a rotation dropped thousands at once, cold, and the new
/// generation grew its table from empty again. Under bench/gateway's load (perf) `put`
/// was 11% of the core's per-event work, three fifths of it dropping a generation and a
/// third regrowing. With the doorkeeper and the emptied table kept, in one process on
/// the bench's events with 32 requests' records alive (three alternating rounds): the
/// core 0.87x the time per event, freeing the records 0.84x. A text seen again is kept
/// as before, one computation later.
struct TextCache<T> {
    half: usize,
    current: TextMap<T>,
    previous: TextMap<T>,
    /// The hash of the last text missed per slot (direct-mapped, `half` slots): a text
    /// whose hash is in its slot was missed before, and is kept this time.
    seen: Box<[u64]>,
}

impl<T> TextCache<T> {
    fn new(size: usize) -> Self {
        let half = size.div_ceil(2);
        TextCache {
            half,
            current: TextMap::default(),
            previous: TextMap::default(),
            seen: vec![0; half].into_boxed_slice(),
        }
    }

    fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    fn get<'py>(&mut self, py: Python<'py>, text: &str) -> Option<Bound<'py, T>> {
        if let Some(found) = self.current.get(text) {
            return Some(found.bind(py).clone());
        }
        let (text, value) = self.previous.remove_entry(text)?;
        let found = value.bind(py).clone();
        self.put(text, value);
        Some(found)
    }

    /// Keep `value` for `text`, which `get` just missed, if it was missed before.
    fn insert(&mut self, text: &str, value: Py<T>) {
        if self.half == 0 {
            return;
        }
        let hash = self.current.hasher().hash_one(text) | 1; // never the empty slot's 0
        let slot = &mut self.seen[(hash % self.half as u64) as usize];
        if *slot != hash {
            *slot = hash; // a first miss: remembered, not kept
            return;
        }
        self.put(text.into(), value);
    }

    fn put(&mut self, text: Box<str>, value: Py<T>) {
        if self.current.len() >= self.half {
            std::mem::swap(&mut self.current, &mut self.previous);
            self.current.clear(); // its table is kept: no growing from empty again
        }
        self.current.insert(text, value);
    }
}

/// The core's caches of one kind, each with the Python object that names what it caches
/// for (a pseudonymiser's cache dict, the transform's redaction dict for a field), so
/// that every plan using the same one shares it.
type Caches<T> = Vec<(PyObject, TextCache<T>)>;

/// The index in `caches` of the cache named by `owner`, made (bounded by `size`) when
/// there is none yet.
fn cache_for<T>(py: Python<'_>, caches: &mut Caches<T>, owner: &PyObject, size: usize) -> usize {
    let owner = owner.bind(py);
    match caches.iter().position(|(o, _)| o.bind(py).is(owner)) {
        Some(index) => index,
        None => {
            caches.push((owner.clone().unbind(), TextCache::new(size)));
            caches.len() - 1
        }
    }
}

/// `gateway.pii.transforms.redact(text, findings)`: each finding's span (character
/// offsets) replaced by `[type]`, in order of start (the longer first), a finding that
/// starts inside one already replaced skipped. None: a finding it cannot read.
/// Compiled because a new text's redaction cost 1.0-2.2 µs as a Python call (measured).
fn redact_spans(
    py: Python<'_>,
    text: &str,
    findings: &Bound<'_, PyAny>,
) -> PyResult<Option<String>> {
    let mut spans = Vec::new();
    for f in findings.try_iter()? {
        let f = f?;
        let (Ok(start), Ok(end), Ok(kind)) = (
            f.getattr(intern!(py, "start"))?.extract::<usize>(),
            f.getattr(intern!(py, "end"))?.extract::<usize>(),
            f.getattr(intern!(py, "type"))?.downcast_into::<PyString>(),
        ) else {
            return Ok(None);
        };
        if end < start {
            return Ok(None); // not a detector's finding: the Python redactor decides
        }
        spans.push((start, end, kind));
    }
    // Stable, as Python's sorted.
    spans.sort_by_key(|s| (s.0, std::cmp::Reverse(s.1)));
    // Character offsets to byte offsets, walking forward: the offsets asked for never
    // go back (a span starting before the cursor is skipped, and none ends before it
    // starts). Past the end: the end, as Python's slices clamp.
    let mut chars = text.char_indices().map(|(b, _)| b).chain([text.len()]);
    let (mut char_at, mut byte_at) = (0, chars.next().unwrap_or(0));
    let mut byte_of = |c: usize| {
        while char_at < c {
            match chars.next() {
                Some(b) => {
                    char_at += 1;
                    byte_at = b;
                }
                None => break,
            }
        }
        byte_at
    };
    let mut out = String::with_capacity(text.len() + 16);
    let (mut cursor, mut from) = (0, 0);
    for (start, end, kind) in &spans {
        if *start < cursor {
            continue;
        }
        out.push_str(&text[from..byte_of(*start)]);
        out.push('[');
        out.push_str(kind.to_str()?);
        out.push(']');
        cursor = *end;
        from = byte_of(cursor);
    }
    out.push_str(&text[from..]);
    Ok(Some(out))
}

/// A slotted class whose instances' fields the core reads and writes in place, at the
/// offsets its member descriptors use, as `object.__setattr__` would (a frozen class's
/// `__init__` sets its fields that way too), without looking the attribute up: the
/// lookups and setters were a sixth of the core's time (perf, bench events), and calling
/// a class cost about 1,600 instructions per message and 7,000 per `Finding`.
/// gateway/native.py names the fields and makes sure the classes' `__init__` does
/// nothing but set them (`make` stands for it). Only instances of exactly this class are
/// touched: `instance` checks the type (a subclass may add a `__setattr__`).
struct SlotClass {
    cls: Py<PyType>,
    offsets: Vec<isize>,
}

/// An instance of a `SlotClass`, its type checked.
struct Slots<'a, 'py> {
    obj: &'a Bound<'py, PyAny>,
    offsets: &'a [isize],
}

impl SlotClass {
    fn new(cls: Bound<'_, PyType>, fields: Vec<String>) -> PyResult<Self> {
        let mut offsets = Vec::with_capacity(fields.len());
        for name in &fields {
            let descr = cls.getattr(name.as_str())?;
            // SAFETY: a member descriptor's layout is CPython's PyMemberDescrObject (its
            // type checked first); d_member points to its PyMemberDef (pyo3 types the
            // pointer as a PyGetSetDef by mistake, hence the cast).
            let offset = unsafe {
                let ptr = descr.as_ptr();
                if pyo3::ffi::Py_TYPE(ptr) != std::ptr::addr_of_mut!(pyo3::ffi::PyMemberDescr_Type)
                {
                    None
                } else {
                    let member = (*ptr.cast::<pyo3::ffi::PyMemberDescrObject>())
                        .d_member
                        .cast::<pyo3::ffi::PyMemberDef>();
                    ((*member).type_code == pyo3::ffi::Py_T_OBJECT_EX
                        && (*member).flags & pyo3::ffi::Py_READONLY == 0)
                        .then_some((*member).offset)
                }
            };
            let Some(offset) = offset else {
                return Err(PyValueError::new_err(format!(
                    "native core: {}.{name} is not a writable slot",
                    cls.qualname()?
                )));
            };
            offsets.push(offset);
        }
        Ok(SlotClass {
            cls: cls.unbind(),
            offsets,
        })
    }

    fn instance<'a, 'py>(&'a self, obj: &'a Bound<'py, PyAny>) -> Option<Slots<'a, 'py>> {
        obj.get_type().is(self.cls.bind(obj.py())).then_some(Slots {
            obj,
            offsets: &self.offsets,
        })
    }

    /// A new instance with `values` in its fields, in order.
    fn make<'py, const N: usize>(
        &self,
        py: Python<'py>,
        values: [Bound<'py, PyAny>; N],
    ) -> PyResult<Bound<'py, PyAny>> {
        assert_eq!(N, self.offsets.len(), "a value per field");
        let obj = self.alloc(py)?;
        let slots = Slots {
            obj: &obj,
            offsets: &self.offsets,
        };
        for (i, value) in values.into_iter().enumerate() {
            slots.set(i, value);
        }
        Ok(obj)
    }

    /// A new instance, every field unset.
    fn alloc<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let tp = self.cls.bind(py).as_type_ptr();
        // SAFETY: tp is a live type object (held by self.cls); tp_alloc returns a new
        // reference with every field NULL, or NULL with an exception set.
        unsafe {
            let alloc = (*tp).tp_alloc.unwrap_or(pyo3::ffi::PyType_GenericAlloc);
            Bound::from_owned_ptr_or_err(py, alloc(tp, 0))
        }
    }
}

/// Makes a request's `EventRecord`s as `EventRecord(stream, index, raw=...)` or
/// `EventRecord(stream, index, event=...)` does, without a Python call per record:
/// each field set from the defaults of a record `EventRecord.__init__` made (given by
/// gateway/native.py, immutable values only), then stream, index, source and the event
/// or its bytes. The Python constructor cost 0.2 µs per record, a fifteenth of the
/// pipeline (bench/gateway).
#[pyclass]
struct RecordFactory {
    class: SlotClass,
    defaults: Vec<PyObject>,
    stream: usize,
    index: usize,
    raw: usize,
    event: usize,
    source: usize,
    event_id: usize,
    status: usize,
    transformed: usize,
    rejected: usize,
}

#[pymethods]
impl RecordFactory {
    #[new]
    fn new(cls: Bound<'_, PyType>, fields: Vec<String>, defaults: Vec<PyObject>) -> PyResult<Self> {
        if defaults.len() != fields.len() {
            return Err(PyValueError::new_err("record factory: a default per field"));
        }
        let at = |name: &str| {
            fields
                .iter()
                .position(|f| f == name)
                .ok_or_else(|| PyValueError::new_err(format!("record factory: no field {name:?}")))
        };
        let (stream, index, raw, event, source) = (
            at("stream")?,
            at("index")?,
            at("raw")?,
            at("event")?,
            at("source")?,
        );
        let (event_id, status, transformed, rejected) = (
            at("event_id")?,
            at("status")?,
            at("transformed")?,
            at("rejected")?,
        );
        Ok(RecordFactory {
            class: SlotClass::new(cls, fields)?,
            defaults,
            stream,
            index,
            raw,
            event,
            source,
            event_id,
            status,
            transformed,
            rejected,
        })
    }

    /// A batch's per-event results as the JSON array `gateway.ingest.Ingest.results`
    /// writes with orjson (its reference, held to the same bytes by
    /// tests/gateway/test_native.py), and the count per outcome (a rejection's outcome
    /// is `denied` when its code is, else `rejected`). None when a record or a value is
    /// not one this writes: the caller then builds the answer in Python. A dict per event
    /// and its encoding and release were a twentieth of the served gateway's GIL time
    /// (py-spy, bench/gateway).
    fn results<'py>(
        &self,
        py: Python<'py>,
        records: Bound<'py, PyList>,
    ) -> PyResult<Option<(Bound<'py, PyBytes>, Bound<'py, PyDict>)>> {
        let mut out = Vec::with_capacity(records.len() * 96 + 2);
        let mut counts: Vec<(Bound<'py, PyString>, usize)> = Vec::new();
        out.push(b'[');
        for (i, record) in records.iter().enumerate() {
            let Some(slots) = self.class.instance(&record) else {
                return Ok(None);
            };
            if i > 0 {
                out.push(b',');
            }
            let Some(index) = slots.get(self.index) else {
                return Ok(None);
            };
            let Ok(index) = index.downcast_exact::<PyInt>().map(|i| i.extract::<i64>()) else {
                return Ok(None);
            };
            let Ok(index) = index else {
                return Ok(None);
            };
            out.extend_from_slice(b"{\"index\":");
            out.extend_from_slice(index.to_string().as_bytes());
            out.extend_from_slice(b",\"event_id\":");
            match slots.get(self.event_id) {
                Some(id) if id.is_none() => out.extend_from_slice(b"null"),
                Some(id) => {
                    let Ok(Ok(id)) = id.downcast_exact::<PyString>().map(|s| s.to_str()) else {
                        return Ok(None);
                    };
                    write_str(id, &mut out);
                }
                None => return Ok(None),
            }
            let outcome = match slots.get(self.rejected) {
                Some(rejected) if !rejected.is_none() => {
                    let text = |name: &Bound<'py, PyString>| -> Option<Bound<'py, PyString>> {
                        rejected
                            .getattr(name)
                            .ok()?
                            .downcast_into_exact::<PyString>()
                            .ok()
                    };
                    let (Some(code), Some(message)) =
                        (text(intern!(py, "code")), text(intern!(py, "message")))
                    else {
                        return Ok(None);
                    };
                    let field = rejected.getattr(intern!(py, "field"))?;
                    out.extend_from_slice(b",\"status\":\"rejected\",\"error\":{\"code\":");
                    write_str(code.to_str()?, &mut out);
                    out.extend_from_slice(b",\"message\":");
                    write_str(message.to_str()?, &mut out);
                    out.extend_from_slice(b",\"field\":");
                    if field.is_none() {
                        out.extend_from_slice(b"null");
                    } else {
                        let Ok(field) = field.downcast_exact::<PyString>() else {
                            return Ok(None);
                        };
                        write_str(field.to_str()?, &mut out);
                    }
                    out.extend_from_slice(b"}}");
                    if code.to_str()? == "denied" {
                        intern!(py, "denied").clone()
                    } else {
                        intern!(py, "rejected").clone()
                    }
                }
                Some(_) => {
                    let Some(Ok(status)) = slots
                        .get(self.status)
                        .map(Bound::downcast_into_exact::<PyString>)
                    else {
                        return Ok(None);
                    };
                    out.extend_from_slice(b",\"status\":");
                    write_str(status.to_str()?, &mut out);
                    out.extend_from_slice(b",\"transformed\":[");
                    let Some(transformed) = slots.get(self.transformed) else {
                        return Ok(None);
                    };
                    let items = if let Ok(t) = transformed.downcast_exact::<PyTuple>() {
                        t.as_sequence().clone()
                    } else if let Ok(l) = transformed.downcast_exact::<PyList>() {
                        l.as_sequence().clone()
                    } else {
                        return Ok(None);
                    };
                    for (j, item) in items.try_iter()?.enumerate() {
                        let item = item?;
                        let Ok(pair) = item.downcast_exact::<PyTuple>() else {
                            return Ok(None);
                        };
                        if pair.len() != 2 {
                            return Ok(None);
                        }
                        let (path, action) = (pair.get_item(0)?, pair.get_item(1)?);
                        let (Ok(path), Ok(action)) = (
                            path.downcast_exact::<PyString>(),
                            action.downcast_exact::<PyString>(),
                        ) else {
                            return Ok(None);
                        };
                        if j > 0 {
                            out.push(b',');
                        }
                        out.extend_from_slice(b"{\"field\":");
                        write_str(path.to_str()?, &mut out);
                        out.extend_from_slice(b",\"action\":");
                        write_str(action.to_str()?, &mut out);
                        out.push(b'}');
                    }
                    out.extend_from_slice(b"]}");
                    status
                }
                None => return Ok(None),
            };
            // The same string object nearly always (Python's literals are interned).
            let same = |name: &Bound<'py, PyString>| {
                name.is(&outcome) || name.as_any().eq(&outcome).unwrap_or(false)
            };
            match counts.iter_mut().find(|(name, _)| same(name)) {
                Some((_, n)) => *n += 1,
                None => counts.push((outcome, 1)),
            }
        }
        out.push(b']');
        let by_outcome = PyDict::new(py);
        for (outcome, n) in counts {
            by_outcome.set_item(outcome, n)?;
        }
        Ok(Some((PyBytes::new(py, &out), by_outcome)))
    }

    /// One record per item: bytes are the event as received, a dict the event parsed;
    /// anything else is passed to `encode` for its bytes.
    fn make<'py>(
        &self,
        py: Python<'py>,
        stream: Bound<'py, PyString>,
        items: Bound<'py, PyList>,
        source: Bound<'py, PyString>,
        encode: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let records = PyList::empty(py);
        for (i, item) in items.iter().enumerate() {
            let record = self.one(py, &stream, i, &source)?;
            let slots = Slots {
                obj: &record,
                offsets: &self.class.offsets,
            };
            if item.is_exact_instance_of::<PyBytes>() {
                slots.set(self.raw, item);
            } else if item.is_exact_instance_of::<PyDict>() {
                slots.set(self.event, item);
            } else {
                slots.set(self.raw, encode.call1((item,))?);
            }
            records.append(record)?;
        }
        Ok(records)
    }
}

impl RecordFactory {
    /// A record of `stream` with every field at its default but its index and source.
    fn one<'py>(
        &self,
        py: Python<'py>,
        stream: &Bound<'py, PyString>,
        index: usize,
        source: &Bound<'py, PyString>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let record = self.class.alloc(py)?;
        let slots = Slots {
            obj: &record,
            offsets: &self.class.offsets,
        };
        for (field, default) in self.defaults.iter().enumerate() {
            slots.set(field, default.bind(py).clone());
        }
        slots.set(self.stream, stream.clone().into_any());
        slots.set(self.index, index.into_pyobject(py)?.into_any());
        slots.set(self.source, source.clone().into_any());
        Ok(record)
    }
}

impl<'py> Slots<'_, 'py> {
    fn slot(&self, field: usize) -> *mut *mut pyo3::ffi::PyObject {
        // SAFETY: the offset is one of this exact type's member slots, inside the object.
        unsafe {
            self.obj
                .as_ptr()
                .cast::<u8>()
                .offset(self.offsets[field])
                .cast()
        }
    }

    /// The field's value; None when it is unset.
    fn get(&self, field: usize) -> Option<Bound<'py, PyAny>> {
        // SAFETY: a slot holds NULL or a strong reference, which the new Bound shares.
        unsafe { Bound::from_borrowed_ptr_or_opt(self.obj.py(), *self.slot(field)) }
    }

    fn set(&self, field: usize, value: Bound<'py, PyAny>) {
        // SAFETY: the slot takes the new reference; the old one is released after, as
        // the member descriptor's setter does.
        unsafe {
            let slot = self.slot(field);
            let old = std::mem::replace(&mut *slot, value.into_ptr());
            pyo3::ffi::Py_XDECREF(old);
        }
    }
}

/// The fields of `gateway.record.EventRecord` the core reads and sets, in this order.
const RECORD_FIELDS: [&str; 9] = [
    "event",
    "raw",
    "event_id",
    "decision",
    "decision_entry",
    "pseudonyms",
    "transformed",
    "audit",
    "message",
];
const R_EVENT: usize = 0;
const R_RAW: usize = 1;
const R_EVENT_ID: usize = 2;
const R_DECISION: usize = 3;
const R_DECISION_ENTRY: usize = 4;
const R_PSEUDONYMS: usize = 5;
const R_TRANSFORMED: usize = 6;
const R_AUDIT: usize = 7;
const R_MESSAGE: usize = 8;
/// The fields of `Finding`, in its `__init__`'s order.
const FINDING_FIELDS: [&str; 4] = ["start", "end", "type", "synthetic"];

/// A member of a flat event: name, value, and the value's Python object when the event
/// came parsed (a JSON-array batch).
type Field<'a, 'py> = (Cow<'a, str>, Val<'a>, Option<Bound<'py, PyAny>>);

struct Check {
    path: String,
    mask: u8,
    required: bool,
}

struct TagField {
    path: Py<PyString>,
    // What the field's texts held: the step's `_scan` result per text (the core's own
    // cache, bounded as the step's is).
    scans: TextCache<PyAny>,
    scan: PyObject,
    // Whether `scan` is `Tag._scan` over a `Detector()` of every type, which
    // `detector::scan_str` and `compiled_scan` stand for; else `scan` is called.
    compiled: bool,
    // The policy classes the field's scan wants (None: all).
    wanted: Option<HashSet<String>>,
}

enum Op {
    Keep,
    Drop,
    Pseudonymise {
        func: PyObject,
        cache: Option<Py<PyDict>>,
    },
    /// A `Pseudonymiser`'s own pseudonym (`prefix` + unpadded base64url HMAC-SHA-256 of
    /// the value's UTF-8), computed here: 2.0 µs per new value in Python against
    /// about 0.3 µs here (bench/gateway, fresh events carry a new driver and plate).
    Hmac {
        mac: Hmac<Sha256>,
        prefix: String,
        // Its pseudonymiser's cache in `Core::token_caches`, if it keeps one.
        cache: Option<usize>,
    },
    Redact {
        spans: bool,
        texts: usize, // its field's cache in `Core::redactions`
    },
}

struct PlanItem {
    path_text: String,
    key_json: Vec<u8>, // `"path":` as orjson writes the key
    change: PyObject,
    op: Op,
}

/// An event's own part of its audit record's canonical encoding.
enum OwnPart {
    EventId,
    Pseudonyms,
}

/// A decision's audit record as `CanonicalRecord` parts (the members the decision fixes,
/// keys and punctuation, shared by every event's `message::Staged`), which of them are the
/// event's own (at most two, in order), the cuts they all share and the
/// `audit.shared.SharedMembers` its member `shared` names (or None).
struct AuditParts {
    pieces: std::sync::Arc<[audit::Piece]>,
    own: Vec<OwnPart>,
    cuts: [usize; 3],
    shared: PyObject,
}

struct Plan {
    entry: PyObject,
    items: Vec<PlanItem>,
    decision: PyObject,
    audit_base: Py<PyDict>, // the decision's shared part, with room for id and pseudonyms
    pseudonymises: bool,    // whether `audit_base` holds a `pseudonyms` key
    // `audit_base` encoded, with places for the event's own members; None when a value
    // of it is not one the encoder writes as orjson does (the record is then a dict).
    audit_parts: Option<AuditParts>,
    // What the transform lists, the same for every event of the plan's shape (which
    // fields are present and which hold findings are part of the shape): made once.
    transformed: Option<Py<PyTuple>>,
}

/// Where the message key's text is: a value of the event, a pseudonym or redaction
/// (a Python string), or a number as written in the minimised event (`out[from..to]`).
enum KeyText<'a, 'py> {
    Value(&'a str),
    Object(Bound<'py, PyString>),
    Written(usize, usize),
}

/// Names compared as `==` does, the first byte before the rest: names of one length
/// mostly differ there, and a call to `memcmp` per comparison was 3% of the core's time
/// (perf, bench events).
#[inline]
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.as_bytes().first() == b.as_bytes().first() && a == b
}

/// The findings of the field at `path`, if it has any (`found` and `lists` are in step).
fn found_list<'a, 'py>(
    found: &[(Bound<'py, PyString>, Bound<'py, PyTuple>)],
    lists: &'a [Bound<'py, PyAny>],
    path: &str,
) -> Option<&'a Bound<'py, PyAny>> {
    found
        .iter()
        .position(|(p, _)| p.to_str().is_ok_and(|p| same(p, path)))
        .map(|i| &lists[i])
}

/// What `one` leaves on the record once every check has passed.
struct Done<'py> {
    event_id: Bound<'py, PyString>,
    plan: usize,
    transformed: Bound<'py, PyTuple>,
    pseudonyms: Option<Bound<'py, PyDict>>,
    message: Bound<'py, PyAny>,
    audit: Bound<'py, PyAny>,
}

/// The fast path of one pipeline. Built by gateway/native.py from the pipeline's steps.
#[pyclass]
struct Core {
    id_field: Py<PyString>,
    id_text: String,
    id_json: Vec<u8>,
    id_max: usize,
    checks: Vec<Check>,
    time_field: Option<(String, bool)>,
    declared: Option<HashSet<String>>,
    tags: Vec<TagField>,
    nothing: PyObject,
    finding_cls: SlotClass,
    // Detector type -> policy class where they differ (steps._DETECTED_AS_POLICY_CLASS).
    classes: HashMap<String, String>,
    cache_size: usize,
    shapes: PyObject,
    entries: Py<PyDict>,
    kinds: [PyObject; 5], // str, int, float, bool, NoneType: the shape's value types
    compile: PyObject,
    // The shape's key, written out (names, kinds, detections) -> its plan in `plans`.
    by_shape: HashMap<Vec<u8>, usize, foldhash::fast::RandomState>,
    plans: Vec<Option<Plan>>,
    redactor: PyObject,
    // Whether `redactor` is gateway.pii.transforms.redact, which `redact_spans` and
    // `whole` stand for here; another redactor is called.
    own_redact: bool,
    whole: Py<PyString>,
    record_cls: SlotClass,
    audit_buf: Vec<u8>,
    // The pseudonymisers' caches (Op::Hmac's `cache` is an index).
    token_caches: Caches<PyString>,
    // Span redactions per field, (findings, result) by text, each with the transform
    // step's dict for the field, which names it (Op::Redact's `texts` is an index).
    redactions: Caches<PyTuple>,
    // Buffers for the minimised event and the shape's key, kept across events.
    out_buf: Vec<u8>,
    shape_buf: Vec<u8>,
    topic: Py<PyString>,
    key_field: Option<String>,
    headers: std::sync::Arc<message::HeaderSet>,
}

fn item<'py, T>(cfg: &Bound<'py, PyDict>, name: &str) -> PyResult<T>
where
    T: FromPyObject<'py>,
{
    match cfg.get_item(name)? {
        Some(value) => value.extract(),
        None => Err(PyValueError::new_err(format!(
            "native core: {name:?} is missing"
        ))),
    }
}

/// `cfg[name]`, a class whose fields `cfg[name + "_fields"]` must be `fields`.
fn slot_class(cfg: &Bound<'_, PyDict>, name: &str, fields: &[&str]) -> PyResult<SlotClass> {
    let given: Vec<String> = item(cfg, &format!("{name}_fields"))?;
    if given != fields {
        return Err(PyValueError::new_err(format!(
            "native core: {name} has the fields {given:?}, not {fields:?}"
        )));
    }
    SlotClass::new(item(cfg, name)?, given)
}

const PLANS_MAX: usize = 4096;

#[pymethods]
impl Core {
    #[new]
    fn new(cfg: &Bound<'_, PyDict>) -> PyResult<Self> {
        let mut checks = Vec::new();
        for (path, type_name, required) in item::<Vec<(String, String, bool)>>(cfg, "checks")? {
            checks.push(Check {
                path,
                mask: mask_of(&type_name)?,
                required,
            });
        }
        type TagItem = (Py<PyString>, PyObject, bool, Option<HashSet<String>>);
        let cache_size: usize = item(cfg, "cache_size")?;
        let tags = item::<Vec<TagItem>>(cfg, "tags")?
            .into_iter()
            .map(|(path, scan, compiled, wanted)| TagField {
                path,
                scans: TextCache::new(cache_size),
                scan,
                compiled,
                wanted,
            })
            .collect();
        let id_text: String = item(cfg, "id_field")?;
        let mut id_json = Vec::new();
        write_str(&id_text, &mut id_json);
        id_json.push(b':');
        Ok(Core {
            id_field: item(cfg, "id_field")?,
            id_text,
            id_json,
            id_max: item(cfg, "id_max")?,
            checks,
            time_field: item(cfg, "time_field")?,
            declared: item(cfg, "declared")?,
            tags,
            nothing: item(cfg, "nothing")?,
            finding_cls: slot_class(cfg, "finding_cls", &FINDING_FIELDS)?,
            classes: item(cfg, "classes")?,
            cache_size: item(cfg, "cache_size")?,
            shapes: item(cfg, "shapes")?,
            entries: item(cfg, "entries")?,
            kinds: item(cfg, "kinds")?,
            compile: item(cfg, "compile")?,
            by_shape: HashMap::default(),
            plans: Vec::new(),
            redactor: item(cfg, "redactor")?,
            own_redact: item(cfg, "own_redact")?,
            whole: item(cfg, "redacted")?,
            audit_buf: Vec::with_capacity(256),
            // Only read and set, never made by its __init__'s order: the names alone.
            record_cls: SlotClass::new(
                item(cfg, "record_cls")?,
                RECORD_FIELDS.iter().map(|f| f.to_string()).collect(),
            )?,
            token_caches: Vec::new(),
            redactions: Vec::new(),
            out_buf: Vec::with_capacity(512),
            shape_buf: Vec::with_capacity(128),
            topic: item(cfg, "topic")?,
            key_field: item(cfg, "key_field")?,
            headers: std::sync::Arc::new(message::HeaderSet {
                event_id_name: item(cfg, "event_id_header")?,
                shared: [item(cfg, "policy_header")?, item(cfg, "stream_header")?],
            }),
        })
    }

    /// Run the records it can; return those it left, untouched, for the Python steps.
    /// (A call while another thread's is under way, which a callback into Python allows,
    /// leaves it every record: the steps are the reference and always right.)
    fn run<'py>(
        slf: &Bound<'py, Self>,
        records: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let py = slf.py();
        let Ok(mut core) = slf.try_borrow_mut() else {
            return PyList::new(py, records.try_iter()?.collect::<PyResult<Vec<_>>>()?);
        };
        let left = PyList::empty(py);
        let mut hits: u64 = 0;
        for record in records.try_iter()? {
            let record = record?;
            match core.one(py, &record)? {
                Some(done) => {
                    core.commit(py, &record, done)?;
                    hits += 1;
                }
                None => left.append(record)?,
            }
        }
        core.count_hits(py, hits)?;
        Ok(left)
    }

    /// A JSON-array body's records, made here (`factory` makes them as
    /// `gateway.native.make_records` does), those this core can finish finished: (the
    /// number of events, the records in order, those left for the pipeline's steps, which
    /// hold their bytes as received). Without a bytes object per event it finishes, nor a
    /// second pass to fill them in. None when the body is not an array of objects the
    /// scan vouches for (parse it with orjson), or the core is in use; (count, None,
    /// None) when it holds more than `max_events` events (nothing is made).
    #[pyo3(signature = (body, factory, stream, source, max_events))]
    #[allow(clippy::type_complexity)]
    fn run_array<'py>(
        slf: &Bound<'py, Self>,
        body: &Bound<'py, PyBytes>,
        factory: &Bound<'py, RecordFactory>,
        stream: &Bound<'py, PyString>,
        source: &Bound<'py, PyString>,
        max_events: usize,
    ) -> PyResult<
        Option<(
            usize,
            Option<Bound<'py, PyList>>,
            Option<Bound<'py, PyList>>,
        )>,
    > {
        let py = slf.py();
        let data = body.as_bytes();
        let Some(spans) = batch::array_spans(py, data) else {
            return Ok(None);
        };
        if spans.len() > max_events {
            return Ok(Some((spans.len(), None, None)));
        }
        let Ok(mut core) = slf.try_borrow_mut() else {
            return Ok(None);
        };
        let factory = factory.borrow();
        let records = PyList::empty(py);
        let left = PyList::empty(py);
        let mut hits: u64 = 0;
        for (i, (from, to)) in spans.iter().copied().enumerate() {
            let record = factory.one(py, stream, i, source)?;
            // SAFETY: `array_spans` checked the whole body is UTF-8, and a span starts
            // at a `{` and ends after a `}`: ASCII, so on character boundaries.
            let text = unsafe { std::str::from_utf8_unchecked(&data[from..to]) };
            match core.raw_event(py, text)? {
                Some(done) => {
                    core.commit(py, &record, done)?;
                    hits += 1;
                }
                None => {
                    let slots = core
                        .record_cls
                        .instance(&record)
                        .expect("made by the factory");
                    slots.set(R_RAW, PyBytes::new(py, text.as_bytes()).into_any());
                    left.append(&record)?;
                }
            }
            records.append(record)?;
        }
        core.count_hits(py, hits)?;
        Ok(Some((spans.len(), Some(records), Some(left))))
    }

    /// How many pseudonyms each pseudonymiser's cache holds, for tests and stats.
    fn cached_pseudonyms(&self) -> Vec<usize> {
        self.token_caches.iter().map(|(_, c)| c.len()).collect()
    }

    /// (compiled plans, memoised decisions it leaves to the steps), for tests and stats.
    fn plans(&self) -> (usize, usize) {
        let compiled = self.plans.iter().filter(|p| p.is_some()).count();
        (compiled, self.plans.len() - compiled)
    }
}

impl Core {
    /// Add the events this core finished to the shape cache's `hits` (the steps' stats).
    fn count_hits(&self, py: Python<'_>, hits: u64) -> PyResult<()> {
        if hits > 0 {
            let shapes = self.shapes.bind(py);
            let before: u64 = shapes.getattr(intern!(py, "hits"))?.extract()?;
            shapes.setattr(intern!(py, "hits"), before + hits)?;
        }
        Ok(())
    }

    /// Every check and every value of one record, without changing it; None: leave it.
    fn one<'py>(
        &mut self,
        py: Python<'py>,
        record: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Done<'py>>> {
        let Some(slots) = self.record_cls.instance(record) else {
            return Ok(None); // not an EventRecord: the steps take it
        };
        let Some(event) = slots.get(R_EVENT) else {
            return Ok(None);
        };
        if event.is_none() {
            let Some(Ok(raw)) = slots.get(R_RAW).map(Bound::downcast_into_exact::<PyBytes>) else {
                return Ok(None);
            };
            // UTF-8 checked once for the whole event, then read as bytes (simdutf8 instead
            // of std's check made no difference measured in alternating processes).
            let Ok(text) = std::str::from_utf8(raw.as_bytes()) else {
                return Ok(None);
            };
            return self.raw_event(py, text);
        }
        let Ok(event) = event.downcast_into_exact::<PyDict>() else {
            return Ok(None);
        };
        // Names and string values borrowed from the event's own strings (a copy of each
        // was a dozen heap allocations per event on the HTTP path).
        let items: Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>)> = event.iter().collect();
        let mut fields = Vec::with_capacity(items.len());
        for (key, value) in &items {
            let Ok(Ok(key)) = key.downcast_exact::<PyString>().map(|k| k.to_str()) else {
                return Ok(None);
            };
            let Some(val) = py_val(value) else {
                return Ok(None);
            };
            // The string object itself too, for the Python calls that take the text.
            let original = matches!(val, Val::Str(_)).then(|| value.clone());
            fields.push((Cow::Borrowed(key), val, original));
        }
        let done = self.process(py, &fields)?;
        if done.is_some() {
            // The identify step takes the id out of the event.
            event.del_item(self.id_field.bind(py))?;
        }
        Ok(done)
    }

    /// An event as received (its JSON text), as `one` takes a record holding it.
    fn raw_event<'py>(&mut self, py: Python<'py>, text: &str) -> PyResult<Option<Done<'py>>> {
        let Some(members) = flat_members(text) else {
            return Ok(None);
        };
        let mut fields = Vec::with_capacity(members.len());
        for (key, value) in members {
            let Some(val) = raw_val(value) else {
                return Ok(None);
            };
            fields.push((Cow::Borrowed(key), val, None));
        }
        self.process(py, &fields)
    }

    fn process<'py>(
        &mut self,
        py: Python<'py>,
        fields: &[Field<'_, 'py>],
    ) -> PyResult<Option<Done<'py>>> {
        // Duplicate names: orjson keeps the last value at the first place; the steps do it.
        for (i, (key, _, _)) in fields.iter().enumerate() {
            if fields[..i].iter().any(|(k, _, _)| same(k, key)) {
                return Ok(None);
            }
        }
        let find = |name: &str| fields.iter().position(|(k, _, _)| same(k, name));
        let get = |name: &str| find(name).map(|i| &fields[i].1);
        // Per field, its string value as a Python str: the event's own object when it
        // came parsed, else made at the first need (tag, pseudonymise, redact share it).
        let mut strs: Vec<Option<Bound<'py, PyString>>> = fields
            .iter()
            .map(|(_, _, o)| {
                o.as_ref()
                    .and_then(|o| o.downcast::<PyString>().ok().cloned())
            })
            .collect();
        let mut py_str = |i: usize, content: &str| -> Bound<'py, PyString> {
            strs[i]
                .get_or_insert_with(|| PyString::new(py, content))
                .clone()
        };

        // identify: a printable ASCII string id, 1 to id_max characters
        let Some(Val::Str(id)) = get(&self.id_text) else {
            return Ok(None);
        };
        if id.is_empty() || id.len() > self.id_max || !id.bytes().all(|b| (0x20..0x7f).contains(&b))
        {
            return Ok(None);
        }

        // validate
        for check in &self.checks {
            match get(&check.path).map(Val::kind) {
                None | Some(T_NONE) => {
                    if check.required {
                        return Ok(None);
                    }
                }
                Some(k) => {
                    if check.mask != 0 && k & check.mask == 0 {
                        return Ok(None);
                    }
                }
            }
        }
        if let Some((path, required)) = &self.time_field {
            match get(path) {
                None | Some(Val::Null) => {
                    if *required {
                        return Ok(None);
                    }
                }
                Some(Val::Str(text)) if iso_with_zone(text.as_bytes()) => {}
                Some(_) => return Ok(None),
            }
        }
        if let Some(declared) = &self.declared {
            if fields
                .iter()
                .any(|(k, _, _)| *k != self.id_text && !declared.contains(k.as_ref()))
            {
                return Ok(None);
            }
        }

        // tag: the scan caches of the tag step, shared
        // Per field with findings: its path and policy classes, and (at the same place in
        // `lists`) the findings. The record gets no dicts of them: nothing after the core
        // reads them, and making and freeing two dicts and a list per event was one in
        // seven of the objects the core made (the steps, which read them, fill them in).
        let mut found: Vec<(Bound<'py, PyString>, Bound<'py, PyTuple>)> = Vec::new();
        let mut lists: Vec<Bound<'py, PyAny>> = Vec::new();
        let nothing = self.nothing.bind(py);
        for t in 0..self.tags.len() {
            let path = self.tags[t].path.bind(py).clone();
            let Some(i) = find(path.to_str()?) else {
                continue;
            };
            let Val::Str(content) = &fields[i].1 else {
                continue;
            };
            if content.is_empty() {
                continue;
            }
            let scanned = match self.tags[t].scans.get(py, content) {
                Some(scanned) => scanned,
                None => {
                    let tag = &self.tags[t];
                    let compiled = if tag.compiled {
                        self.compiled_scan(py, content, tag)?
                    } else {
                        None
                    };
                    let scanned = match compiled {
                        Some(scanned) => scanned,
                        None => match tag.scan.bind(py).call1((py_str(i, content),)) {
                            Ok(scanned) => scanned,
                            Err(_) => return Ok(None),
                        },
                    };
                    self.tags[t].scans.insert(content, scanned.clone().unbind());
                    scanned
                }
            };
            if scanned.is(nothing) {
                continue;
            }
            let pair = scanned.downcast_into::<PyTuple>()?;
            let (list, types) = (
                pair.get_item(0)?,
                pair.get_item(1)?.downcast_into::<PyTuple>()?,
            );
            lists.push(list);
            found.push((path, types));
        }

        // decide: the plan of this shape's memoised decision, else leave it to the steps
        let mut shape_key = std::mem::take(&mut self.shape_buf);
        shape_key.clear();
        for (key, val, _) in fields {
            if *key != self.id_text {
                shape_key.extend_from_slice(key.as_bytes());
                shape_key.push(0xff); // never in UTF-8
                shape_key.push(val.kind());
            }
        }
        for (path, types) in &found {
            shape_key.push(0xfe);
            shape_key.extend_from_slice(path.to_str()?.as_bytes());
            for t in types.iter() {
                shape_key.push(0xff);
                shape_key.extend_from_slice(t.downcast::<PyString>()?.to_str()?.as_bytes());
            }
        }
        let plan = match self.by_shape.get(&shape_key) {
            Some(&plan) => plan,
            None => {
                let Some(plan) = self.find_plan(py, fields, &found)? else {
                    return Ok(None);
                };
                if self.plans.len() >= PLANS_MAX {
                    self.plans.clear();
                    self.by_shape.clear();
                }
                self.plans.push(plan);
                self.by_shape
                    .insert(shape_key.clone(), self.plans.len() - 1);
                self.plans.len() - 1
            }
        };
        self.shape_buf = shape_key;
        let Some(plan_ref) = self.plans[plan].as_ref() else {
            return Ok(None);
        };

        // transform, and the minimised event written as orjson writes it
        // The transformed list is made for the first event of the plan only.
        let transformed = plan_ref.transformed.is_none().then(|| PyList::empty(py));
        // (path, pseudonym) per pseudonymised field, for the audit record
        let mut tokens: Vec<(&str, Bound<'py, PyString>)> = Vec::new();
        let mut out = std::mem::take(&mut self.out_buf); // its capacity kept across events
        out.clear();
        let mut key: Option<KeyText<'_, 'py>> = None;
        out.push(b'{');
        for step in &plan_ref.items {
            let Some(i) = find(&step.path_text) else {
                continue;
            };
            let value = &fields[i].1;
            let written: Option<Bound<'py, PyString>> = match &step.op {
                Op::Keep => {
                    if let Some(t) = &transformed {
                        if found_list(&found, &lists, &step.path_text).is_some() {
                            t.append(&step.change)?;
                        }
                    }
                    None
                }
                Op::Drop => {
                    if let Some(t) = &transformed {
                        t.append(&step.change)?;
                    }
                    continue;
                }
                Op::Pseudonymise { .. } | Op::Hmac { .. } => {
                    let Val::Str(content) = value else {
                        return Ok(None);
                    };
                    let token = match &step.op {
                        Op::Hmac { mac, prefix, cache } => match cache {
                            // A recurring value (most drivers and plates) costs a lookup,
                            // and shares its pseudonym's object.
                            Some(index) => {
                                let cache = &mut self.token_caches[*index].1;
                                match cache.get(py, content) {
                                    Some(token) => token,
                                    None => {
                                        let token = hmac_token(py, mac, prefix, content);
                                        cache.insert(content, token.clone().unbind());
                                        token
                                    }
                                }
                            }
                            None => hmac_token(py, mac, prefix, content),
                        }
                        .into_any(),
                        Op::Pseudonymise { func, cache } => {
                            let text = py_str(i, content);
                            // The pseudonymiser's own cache, read only: on a miss it
                            // hashes and keeps.
                            let cached = match cache {
                                Some(cache) => cache.bind(py).get_item(&text)?,
                                None => None,
                            };
                            match cached {
                                Some(token) => token,
                                None => match func.bind(py).call1((&text,)) {
                                    Ok(token) => token,
                                    Err(_) => return Ok(None),
                                },
                            }
                        }
                        _ => return Ok(None), // not reached: the arm's two ops
                    };
                    let Ok(token) = token.downcast_into_exact::<PyString>() else {
                        return Ok(None);
                    };
                    tokens.push((&step.path_text, token.clone()));
                    if let Some(t) = &transformed {
                        t.append(&step.change)?;
                    }
                    Some(token)
                }
                Op::Redact {
                    spans,
                    texts: redacted,
                } => {
                    let Val::Str(content) = value else {
                        return Ok(None);
                    };
                    let list = found_list(&found, &lists, &step.path_text).cloned();
                    let result = match list {
                        Some(list) if *spans && list.is_truthy()? => {
                            // The field's redactions (findings, result) by text: recurring
                            // texts (templated notes) are redacted once.
                            let known = self.redactions[*redacted].1.get(py, content);
                            match known {
                                Some(known) if known.get_item(0)?.is(&list) => known.get_item(1)?,
                                _ => {
                                    let result = if self.own_redact {
                                        match redact_spans(py, content, &list)? {
                                            Some(text) => PyString::new(py, &text).into_any(),
                                            None => return Ok(None),
                                        }
                                    } else {
                                        let text = py_str(i, content);
                                        match self.redactor.bind(py).call1((&text, &list)) {
                                            Ok(result) => result,
                                            Err(_) => return Ok(None),
                                        }
                                    };
                                    let entry = PyTuple::new(py, [&list, &result])?;
                                    self.redactions[*redacted].1.insert(content, entry.unbind());
                                    result
                                }
                            }
                        }
                        _ if self.own_redact => self.whole.bind(py).clone().into_any(),
                        _ => match self.redactor.bind(py).call1((py_str(i, content),)) {
                            Ok(result) => result,
                            Err(_) => return Ok(None),
                        },
                    };
                    let Ok(result) = result.downcast_into_exact::<PyString>() else {
                        return Ok(None);
                    };
                    if let Some(t) = &transformed {
                        t.append(&step.change)?;
                    }
                    Some(result)
                }
            };
            if out.len() > 1 {
                out.push(b',');
            }
            out.extend_from_slice(&step.key_json);
            let is_key = self.key_field.as_deref() == Some(step.path_text.as_str());
            match written {
                Some(written_text) => {
                    let Ok(text) = written_text.to_str() else {
                        return Ok(None);
                    };
                    write_str(text, &mut out);
                    if is_key {
                        key = Some(KeyText::Object(written_text.clone()));
                    }
                }
                None => {
                    let from = out.len();
                    value.write_json(&mut out);
                    if is_key {
                        key = match value {
                            Val::Str(s) => Some(KeyText::Value(s)),
                            Val::Null => None,
                            _ => Some(KeyText::Written(from, out.len())),
                        };
                    }
                }
            }
        }
        if out.len() > 1 {
            out.push(b',');
        }
        out.extend_from_slice(&self.id_json);
        write_str(id, &mut out);
        out.push(b'}');

        // publish and audit: the event staged as one object, its message with its key
        // (its headers are the core's, made when read) and its audit record: the
        // decision's shared part with this event's id and pseudonyms, encoded when the
        // decision's part could be (the record has no dict of the pseudonyms then).
        let event_id = PyString::new(py, id);
        let key: Option<&[u8]> = match &key {
            Some(KeyText::Value(text)) => Some(text.as_bytes()),
            Some(KeyText::Object(text)) => Some(text.to_str()?.as_bytes()),
            Some(KeyText::Written(from, to)) => Some(&out[*from..*to]),
            None => None,
        };
        let mut buf = std::mem::take(&mut self.audit_buf);
        let encoding = match &plan_ref.audit_parts {
            // (Without pseudonyms, not reached: every pseudonymised field is in the shape.)
            Some(parts) if tokens.is_empty() != plan_ref.pseudonymises => {
                audit_own_parts(parts, id, &mut tokens, &mut buf)?.map(|ends| message::OwnAudit {
                    pieces: parts.pieces.clone(),
                    cuts: parts.cuts,
                    shared: parts.shared.clone_ref(py),
                    own: &buf,
                    ends,
                })
            }
            _ => None,
        };
        let encoded = encoding.is_some();
        let staged = Bound::new(
            py,
            message::Staged::new(
                self.topic.clone_ref(py),
                &out,
                key,
                event_id.clone().unbind(),
                self.headers.clone(),
                encoding,
            ),
        )?
        .into_any();
        self.audit_buf = buf;
        self.out_buf = out;
        let mut pseudonyms = None;
        let audit = if encoded {
            staged.clone()
        } else {
            let audit = plan_ref.audit_base.bind(py).copy()?;
            audit.set_item(intern!(py, "event_id"), &event_id)?;
            if !tokens.is_empty() {
                let dict = PyDict::new(py);
                for (path, token) in &tokens {
                    dict.set_item(path, token)?;
                }
                audit.set_item(intern!(py, "pseudonyms"), &dict)?;
                pseudonyms = Some(dict);
            } else if plan_ref.pseudonymises {
                // As the step does (not reached, as above).
                audit.del_item(intern!(py, "pseudonyms"))?;
            }
            audit.into_any()
        };
        let transformed = match &plan_ref.transformed {
            Some(shared) => shared.bind(py).clone(),
            None => {
                let shared = transformed
                    .expect("collected for the first event")
                    .to_tuple();
                if let Some(p) = self.plans[plan].as_mut() {
                    p.transformed = Some(shared.clone().unbind());
                }
                shared
            }
        };
        Ok(Some(Done {
            event_id,
            plan,
            transformed,
            pseudonyms,
            message: staged,
            audit,
        }))
    }

    /// The memoised decision of a shape the core has not seen (the decide step's own
    /// key), compiled; None while the steps have not made it, or its plan, yet.
    fn find_plan(
        &mut self,
        py: Python<'_>,
        fields: &[Field<'_, '_>],
        found: &[(Bound<'_, PyString>, Bound<'_, PyTuple>)],
    ) -> PyResult<Option<Option<Plan>>> {
        let mut keys = Vec::with_capacity(fields.len());
        let mut kinds = Vec::with_capacity(fields.len());
        for (key, val, _) in fields {
            if *key != self.id_text {
                keys.push(PyString::new(py, key));
                let index = match val {
                    Val::Str(_) => 0,
                    Val::Int(_) => 1,
                    Val::Float(_) => 2,
                    Val::Bool(_) => 3,
                    Val::Null => 4,
                };
                kinds.push(self.kinds[index].bind(py).clone());
            }
        }
        let mut parts = vec![
            PyTuple::new(py, keys)?.into_any(),
            PyTuple::new(py, kinds)?.into_any(),
        ];
        if !found.is_empty() {
            parts.push(PyTuple::new(py, found.iter().map(|f| f.0.clone()))?.into_any());
            parts.push(PyTuple::new(py, found.iter().map(|f| f.1.clone()))?.into_any());
        }
        let shape = PyTuple::new(py, parts)?;
        let Some(entry) = self.entries.bind(py).get_item(&shape)? else {
            return Ok(None);
        };
        let compiled = self.compile.bind(py).call1((&entry,))?;
        if compiled.is_none() {
            return Ok(None);
        }
        type Compiled = (
            bool,
            Vec<(Py<PyString>, PyObject, String, Vec<u8>, PyObject, PyObject)>,
            PyObject,
            Option<Py<PyDict>>,
        );
        let (supported, items, decision, audit_base): Compiled = compiled.extract()?;
        let Some(audit_base) = audit_base.filter(|_| supported) else {
            return Ok(Some(None));
        };
        let mut plan_items = Vec::with_capacity(items.len());
        for (path, change, op_name, key_json, a, b) in items {
            let op = match op_name.as_str() {
                "keep" => Op::Keep,
                "drop" => Op::Drop,
                "pseudonymise" => Op::Pseudonymise {
                    func: a,
                    cache: b.extract(py)?,
                },
                "hmac" => {
                    let (key, owner, size): (Vec<u8>, PyObject, usize) = a.extract(py)?;
                    // One cache per pseudonymiser, shared by every plan that uses it.
                    let cache =
                        (size > 0).then(|| cache_for(py, &mut self.token_caches, &owner, size));
                    Op::Hmac {
                        mac: Hmac::<Sha256>::new_from_slice(&key)
                            .map_err(|_| PyValueError::new_err("native core: an unusable key"))?,
                        prefix: b.extract(py)?,
                        cache,
                    }
                }
                "redact" => {
                    // One cache per field (the step's dict for it names it), every plan's.
                    let texts = cache_for(py, &mut self.redactions, &b, self.cache_size);
                    Op::Redact {
                        spans: a.extract(py)?,
                        texts,
                    }
                }
                other => {
                    return Err(PyValueError::new_err(format!(
                        "native core: unknown op {other:?}"
                    )))
                }
            };
            let path_text = path.bind(py).to_str()?.to_owned();
            plan_items.push(PlanItem {
                path_text,
                key_json,
                change,
                op,
            });
        }
        // The record's keys in the order the audit step adds them (its shared part, the
        // id, the pseudonyms when any field is pseudonymised, which the shape fixes), so
        // that an event's copy has room for its values: setting them then replaces a
        // value instead of inserting a key.
        let audit_base = audit_base.bind(py).copy()?;
        audit_base.set_item(intern!(py, "event_id"), py.None())?;
        let pseudonymises = plan_items
            .iter()
            .any(|item| matches!(item.op, Op::Hmac { .. } | Op::Pseudonymise { .. }));
        if pseudonymises {
            audit_base.set_item(intern!(py, "pseudonyms"), py.None())?;
        }
        Ok(Some(Some(Plan {
            entry: entry.unbind(),
            items: plan_items,
            decision,
            audit_parts: audit_parts(&audit_base)?,
            audit_base: audit_base.unbind(),
            pseudonymises,
            transformed: None,
        })))
    }

    /// What `Tag._scan(text, wanted)` returns, from the compiled detector: the nothing
    /// marker, or (findings as `Finding`s, their policy classes sorted). None where the
    /// compiled detector leaves the text to Python's.
    fn compiled_scan<'py>(
        &self,
        py: Python<'py>,
        text: &str,
        tag: &TagField,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let Some(found) = detector::scan_str(text) else {
            return Ok(None);
        };
        let mut findings = Vec::with_capacity(found.len());
        let mut classes: Vec<&str> = Vec::new();
        for (start, end, kind, synthetic) in found {
            let class = self.classes.get(kind).map_or(kind, String::as_str);
            if tag.wanted.as_ref().is_some_and(|w| !w.contains(class)) {
                continue;
            }
            findings.push(self.finding_cls.make(
                py,
                [
                    start.into_pyobject(py)?.into_any(),
                    end.into_pyobject(py)?.into_any(),
                    PyString::intern(py, kind).into_any(),
                    PyBool::new(py, synthetic).to_owned().into_any(),
                ],
            )?);
            if !classes.contains(&class) {
                classes.push(class);
            }
        }
        if findings.is_empty() {
            return Ok(Some(self.nothing.bind(py).clone()));
        }
        classes.sort_unstable();
        let classes = classes.iter().map(|c| PyString::intern(py, c));
        let pair = PyTuple::new(
            py,
            [
                PyList::new(py, findings)?.into_any(),
                PyTuple::new(py, classes)?.into_any(),
            ],
        )?;
        Ok(Some(pair.into_any()))
    }

    fn commit<'py>(
        &self,
        py: Python<'py>,
        record: &Bound<'py, PyAny>,
        done: Done<'py>,
    ) -> PyResult<()> {
        let plan = self.plans[done.plan].as_ref().expect("a compiled plan");
        let slots = self.record_cls.instance(record).expect("checked by one");
        slots.set(R_EVENT_ID, done.event_id.into_any());
        slots.set(R_DECISION, plan.decision.bind(py).clone());
        slots.set(R_DECISION_ENTRY, plan.entry.bind(py).clone());
        if let Some(p) = done.pseudonyms {
            slots.set(R_PSEUDONYMS, p.into_any());
        }
        slots.set(R_TRANSFORMED, done.transformed.into_any());
        slots.set(R_AUDIT, done.audit.into_any());
        slots.set(R_MESSAGE, done.message);
        Ok(())
    }
}

/// A decision's audit record (with `event_id` and, when it pseudonymises, `pseudonyms`
/// as placeholders) as the parts of its canonical encoding, keys sorted as orjson's
/// OPT_SORT_KEYS sorts them; None when a value is not one `audit::write_value` writes.
fn audit_parts(base: &Bound<'_, PyDict>) -> PyResult<Option<AuditParts>> {
    let py = base.py();
    let mut members: Vec<(String, Option<Bound<'_, PyAny>>)> = Vec::with_capacity(base.len() + 3);
    for (key, value) in base.iter() {
        let Ok(key) = key.downcast_exact::<PyString>() else {
            return Ok(None);
        };
        let key = key.to_str()?.to_owned();
        if matches!(key.as_str(), "prev" | "seq" | "ts") {
            return Ok(None); // not a decision record the log would take
        }
        members.push((key, Some(value)));
    }
    for name in ["prev", "seq", "ts"] {
        members.push((name.to_owned(), None)); // where the log splices its members
    }
    members.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let mut pieces = Vec::new();
    let mut own_parts = Vec::new();
    let mut cuts = Vec::with_capacity(3);
    let mut run = vec![b'{'];
    let flush = |run: &mut Vec<u8>, pieces: &mut Vec<audit::Piece>| {
        if !run.is_empty() {
            pieces.push(audit::Piece::Shared(PyBytes::new(py, run).unbind()));
            run.clear();
        }
    };
    let mut first = true;
    let mut shared = py.None();
    for (key, value) in &members {
        let Some(value) = value else {
            flush(&mut run, &mut pieces);
            cuts.push(pieces.len());
            continue;
        };
        if !first {
            run.push(b',');
        }
        first = false;
        write_str(key, &mut run);
        run.push(b':');
        let own = match key.as_str() {
            "event_id" => Some(OwnPart::EventId),
            "pseudonyms" if value.is_none() => Some(OwnPart::Pseudonyms),
            "shared" => {
                // Written as its reference; the log writes the members (audit/shared.py).
                let Ok(reference) = value.getattr(intern!(py, "ref")) else {
                    return Ok(None);
                };
                let Ok(reference) = reference.downcast_exact::<PyString>() else {
                    return Ok(None);
                };
                write_str(reference.to_str()?, &mut run);
                shared = value.clone().unbind();
                continue;
            }
            _ => None,
        };
        match own {
            Some(part) => {
                flush(&mut run, &mut pieces);
                pieces.push(audit::Piece::Own);
                own_parts.push(part);
            }
            None => {
                if !audit::write_value(value, &mut run, 1) {
                    return Ok(None);
                }
            }
        }
    }
    run.push(b'}');
    flush(&mut run, &mut pieces);
    Ok(Some(AuditParts {
        pieces: pieces.into(),
        own: own_parts,
        cuts: cuts
            .try_into()
            .map_err(|_| PyValueError::new_err("native core: three cuts"))?,
        shared,
    }))
}

/// An event's own parts of its audit record (its id, its pseudonyms), written into
/// `buf` one after another; where each ends. None when a text is not valid UTF-8 (a lone
/// surrogate: the record is then a dict, which the log refuses as orjson does).
fn audit_own_parts(
    parts: &AuditParts,
    event_id: &str,
    pseudonyms: &mut [(&str, Bound<'_, PyString>)],
    buf: &mut Vec<u8>,
) -> PyResult<Option<[usize; 2]>> {
    buf.clear();
    let mut ends = [0; 2];
    for (n, part) in parts.own.iter().enumerate() {
        match part {
            OwnPart::EventId => write_str(event_id, buf),
            OwnPart::Pseudonyms => {
                // A dict of them, its keys sorted (a field is pseudonymised once).
                pseudonyms.sort_unstable_by(|a, b| a.0.cmp(b.0));
                buf.push(b'{');
                for (i, (path, token)) in pseudonyms.iter().enumerate() {
                    if i > 0 {
                        buf.push(b',');
                    }
                    write_str(path, buf);
                    buf.push(b':');
                    let Ok(token) = token.to_str() else {
                        return Ok(None);
                    };
                    write_str(token, buf);
                }
                buf.push(b'}');
            }
        }
        // (A decision record holds each member once: two own parts at most.)
        let Some(end) = ends.get_mut(n) else {
            return Ok(None);
        };
        *end = buf.len();
    }
    Ok(Some(ends))
}

/// What the core takes of an event's bytes, for the tests: `flat_members` and every
/// value read by `raw_val`, as `Core::one` reads them (names and value tokens), or None.
#[pyfunction]
#[pyo3(name = "flat_members")]
fn py_flat_members(text: &[u8]) -> Option<Vec<(String, String)>> {
    let text = std::str::from_utf8(text).ok()?;
    flat_members(text)?
        .into_iter()
        .map(|(k, v)| raw_val(v).map(|_| (k.to_owned(), v.to_owned())))
        .collect()
}

/// `iso_with_zone` for the tests (each string it accepts, Python must accept with a zone).
#[pyfunction]
#[pyo3(name = "iso_with_zone")]
fn py_iso_with_zone(text: &str) -> bool {
    iso_with_zone(text.as_bytes())
}

/// A number token as the core writes it (None: the steps take the event), for the tests.
#[pyfunction]
#[pyo3(name = "number_text")]
fn py_number_text(token: &str) -> Option<String> {
    match raw_val(token)? {
        Val::Int(t) | Val::Float(t) => Some(t.into_owned()),
        _ => None,
    }
}

/// A Python float as the core writes it (None: the steps take the event), for the tests.
#[pyfunction]
#[pyo3(name = "float_text")]
fn py_float_text(x: f64) -> Option<String> {
    float_text(x)
}

/// `redact_spans` for the tests (None where the core would leave the record).
#[pyfunction]
#[pyo3(name = "redact_spans")]
fn py_redact_spans(
    py: Python<'_>,
    text: &str,
    findings: &Bound<'_, PyAny>,
) -> PyResult<Option<String>> {
    redact_spans(py, text, findings)
}

/// A string as the core writes it in JSON, for the tests.
#[pyfunction]
#[pyo3(name = "json_str")]
fn py_json_str(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    write_str(text, &mut out);
    out
}

#[pymodule]
fn fjordgate_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Core>()?;
    m.add_class::<RecordFactory>()?;
    m.add_class::<kafka::TxnProducer>()?;
    m.add_class::<message::Staged>()?;
    m.add_class::<idindex::EventIdIndex>()?;
    m.add("KAFKA_QUEUE_FULL", kafka::QUEUE_FULL)?;
    m.add_function(wrap_pyfunction!(py_flat_members, m)?)?;
    m.add_function(wrap_pyfunction!(py_iso_with_zone, m)?)?;
    m.add_function(wrap_pyfunction!(py_number_text, m)?)?;
    m.add_function(wrap_pyfunction!(py_float_text, m)?)?;
    m.add_function(wrap_pyfunction!(py_json_str, m)?)?;
    m.add_function(wrap_pyfunction!(py_redact_spans, m)?)?;
    m.add_function(wrap_pyfunction!(detector::scan_text, m)?)?;
    m.add_function(wrap_pyfunction!(audit::chain_records, m)?)?;
    m.add_function(wrap_pyfunction!(batch::split_array, m)?)?;
    Ok(())
}
