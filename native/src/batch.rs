//! A JSON-array request body split into its events' bytes, without making them Python
//! objects (`gateway.ingest.Ingest.parse_body`).
//!
//! `orjson.loads` of a 500-event body made a dict, its strings and numbers for every
//! event, which the core then read back; the core reads an event's bytes as fast
//! (the NDJSON path). Measured in one process on the bench's events, the whole ingest
//! (parse, records, pipeline) took 0.43-0.88× (busy machine) and 0.71-0.91× (quiet)
//! the time from the events' bytes as from the loaded dicts, in alternating sets; the
//! scan costs 0.22 µs per event and runs with the GIL released for large bodies.
//!
//! It answers only when orjson would accept the whole body and every element is an
//! object: it checks the JSON grammar, and declines (None) whatever orjson might read
//! differently or refuse (unpaired surrogate escapes, numbers that may overflow a double,
//! nesting near orjson's limit, invalid UTF-8, a byte order mark) and anything that is
//! not an array of objects. The caller then parses the body with orjson, as before, and
//! answers its errors. tests/gateway/test_native.py holds it to orjson.

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::{literal_end, number_end, plain_run_end, skip_ws};

/// orjson refuses nesting deeper than 1024; well short of it, the scan declines.
const MAX_DEPTH: usize = 512;
/// A number token longer than this is declined (orjson reads it; it is not worth a scan).
const MAX_NUMBER: usize = 300;

/// The end of the JSON string starting at `b[i]` (after its closing quote), escapes
/// included; None for control characters, bad escapes and unpaired surrogate escapes.
fn string_end(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    loop {
        j = plain_run_end(b, j);
        match *b.get(j)? {
            b'"' => return Some(j + 1),
            b'\\' => {
                j += 1;
                match *b.get(j)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => j += 1,
                    b'u' => {
                        let unit = hex_unit(b, j + 1)?;
                        j += 5;
                        if (0xdc00..0xe000).contains(&unit) {
                            return None; // a low surrogate first: orjson refuses it
                        }
                        if (0xd800..0xdc00).contains(&unit) {
                            // A high surrogate must be followed by a low one (emoji as
                            // `json.dumps` writes them); orjson refuses it alone.
                            if b.get(j..j + 2) != Some(b"\\u") {
                                return None;
                            }
                            if !(0xdc00..0xe000).contains(&hex_unit(b, j + 2)?) {
                                return None;
                            }
                            j += 6;
                        }
                    }
                    _ => return None,
                }
            }
            0..=0x1f => return None,
            _ => j += 1,
        }
    }
}

/// The UTF-16 unit of the four hex digits at `b[i..i + 4]`.
fn hex_unit(b: &[u8], i: usize) -> Option<u16> {
    let hex = b.get(i..i + 4)?;
    if !hex.iter().all(u8::is_ascii_hexdigit) {
        return None; // `from_str_radix` would take a sign
    }
    u16::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
}

/// The end of the object or array opening at `b[i]` and closed by `close`; `item` gives
/// the end of the member or element starting at its argument.
fn container_end(
    b: &[u8],
    i: usize,
    close: u8,
    depth: usize,
    item: impl Fn(usize) -> Option<usize>,
) -> Option<usize> {
    if depth >= MAX_DEPTH {
        return None;
    }
    let mut j = skip_ws(b, i + 1);
    if b.get(j) == Some(&close) {
        return Some(j + 1);
    }
    loop {
        j = skip_ws(b, item(j)?);
        match *b.get(j)? {
            b',' => j = skip_ws(b, j + 1),
            c if c == close => return Some(j + 1),
            _ => return None,
        }
    }
}

/// The end of the JSON value starting at `b[i]`, if it is one this scan vouches for.
fn value_end(b: &[u8], i: usize, depth: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => string_end(b, i),
        b'{' => container_end(b, i, b'}', depth, |j| {
            if b.get(j) != Some(&b'"') {
                return None;
            }
            let colon = skip_ws(b, string_end(b, j)?);
            if b.get(colon) != Some(&b':') {
                return None;
            }
            value_end(b, skip_ws(b, colon + 1), depth + 1)
        }),
        b'[' => container_end(b, i, b']', depth, |j| value_end(b, j, depth + 1)),
        b't' => literal_end(b, i, b"true"),
        b'f' => literal_end(b, i, b"false"),
        b'n' => literal_end(b, i, b"null"),
        b'-' | b'0'..=b'9' => {
            let end = number_end(b, i)?;
            let token = std::str::from_utf8(&b[i..end]).ok()?;
            // A double too large for orjson (it refuses infinities): the same correctly
            // rounded parse says so. Short integers are exact.
            let finite = token.len() <= 18 && !token.contains(['.', 'e', 'E'])
                || token.parse::<f64>().is_ok_and(f64::is_finite);
            (token.len() <= MAX_NUMBER && finite).then_some(end)
        }
        _ => None,
    }
}

/// The (start, end) of each element of the JSON array `b`, if every element is an
/// object and the scan vouches for the whole text.
fn array_of_objects(b: &[u8]) -> Option<Vec<(usize, usize)>> {
    std::str::from_utf8(b).ok()?;
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'[') {
        return None;
    }
    let mut spans = Vec::new();
    i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b']') {
        return (skip_ws(b, i + 1) == b.len()).then_some(spans);
    }
    loop {
        if b.get(i) != Some(&b'{') {
            return None;
        }
        let end = value_end(b, i, 1)?;
        spans.push((i, end));
        i = skip_ws(b, end);
        match b.get(i)? {
            b',' => i = skip_ws(b, i + 1),
            b']' => return (skip_ws(b, i + 1) == b.len()).then_some(spans),
            _ => return None,
        }
    }
}

/// The (start, end) of each event of a JSON-array body, if this scan vouches that orjson
/// reads it as an array of objects (the whole body is valid UTF-8 then, and each span
/// starts at a `{` and ends after a `}`).
pub(crate) fn array_spans(py: Python<'_>, data: &[u8]) -> Option<Vec<(usize, usize)>> {
    // A small body is scanned with the GIL held (see RELEASE_GIL_BYTES).
    if data.len() >= crate::RELEASE_GIL_BYTES {
        py.allow_threads(|| array_of_objects(data))
    } else {
        array_of_objects(data)
    }
}

/// The events of a JSON-array body as bytes, each exactly as written; None when the body
/// is not an array of objects this scan vouches for (the caller parses it with orjson).
#[pyfunction]
pub fn split_array<'py>(
    py: Python<'py>,
    body: &Bound<'py, PyBytes>,
) -> Option<Vec<Bound<'py, PyBytes>>> {
    let data = body.as_bytes();
    let spans = array_spans(py, data)?;
    Some(
        spans
            .into_iter()
            .map(|(from, to)| PyBytes::new(py, &data[from..to]))
            .collect(),
    )
}
