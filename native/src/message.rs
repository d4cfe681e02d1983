//! An event the compiled core finished, staged for the committer: its message (what
//! `gateway.record.OutgoingMessage` holds) and its audit record's encoding (what
//! `audit.log.CanonicalRecord` holds), as one object. The record's `message` and
//! `audit` are both this object.
//!
//! An `OutgoingMessage` made by the core was five Python objects per event (the
//! message, its value and key bytes, the header list and the event-id header's
//! tuple), each allocated, tracked by the collector and freed; the audit record was
//! two more (a `CanonicalRecord` and its parts). This is one, with the value, the key
//! and the audit record's own parts in one buffer; the compiled producer (kafka.rs) and
//! the compiled audit chain (audit.rs) read it in place. Read from Python it answers as
//! an `OutgoingMessage` does (`topic`, `key`, `value`, `headers`, `event_id`) and as a
//! `CanonicalRecord` does (`parts`, `cuts`, `shared`, `body`), each made when read: the
//! local log, confluent-kafka's producer and the audit log's Python loop read it that way.

use std::sync::Arc;

use pyo3::exceptions::PyAttributeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

use crate::audit::Piece;

/// The headers every message of one core carries: the event-id header's name, and the
/// policy and stream headers (`(name, value)` tuples, shared).
pub struct HeaderSet {
    pub event_id_name: Py<PyString>,
    pub shared: [Py<PyTuple>; 2],
}

/// An event's audit record as the parts of its canonical encoding: its decision's
/// shared parts and the event's own (at most two: its id and its pseudonyms, held in the
/// `Staged` buffer), the cuts where the log splices `prev`, `seq` and `ts`, and the
/// `audit.shared.SharedMembers` its member `shared` names (or None).
struct AuditEncoding {
    pieces: Arc<[Piece]>,
    cuts: [usize; 3],
    shared: PyObject,
    /// Where the own parts end in the buffer (they start after the key).
    ends: [usize; 2],
}

/// An encoded audit record as `Staged::new` takes it: the decision's shared pieces, cuts
/// and shared members, and the event's own parts written one after another in `own`,
/// each ending at its entry of `ends`.
pub struct OwnAudit<'a> {
    pub pieces: Arc<[Piece]>,
    pub cuts: [usize; 3],
    pub shared: PyObject,
    pub own: &'a [u8],
    pub ends: [usize; 2],
}

#[pyclass(frozen, module = "fjordgate_native")]
pub struct Staged {
    pub topic: Py<PyString>,
    /// The value, the key (if any), then the audit record's own parts.
    data: Box<[u8]>,
    value_len: usize,
    key_end: Option<usize>,
    pub event_id: Py<PyString>,
    headers: Arc<HeaderSet>,
    audit: Option<AuditEncoding>,
}

impl Staged {
    pub fn new(
        topic: Py<PyString>,
        value: &[u8],
        key: Option<&[u8]>,
        event_id: Py<PyString>,
        headers: Arc<HeaderSet>,
        audit: Option<OwnAudit<'_>>,
    ) -> Self {
        let own_len = audit.as_ref().map_or(0, |a| a.own.len());
        let mut data = Vec::with_capacity(value.len() + key.map_or(0, <[u8]>::len) + own_len);
        data.extend_from_slice(value);
        let key_end = key.map(|key| {
            data.extend_from_slice(key);
            data.len()
        });
        let own_start = data.len();
        let audit = audit.map(|a| {
            data.extend_from_slice(a.own);
            AuditEncoding {
                pieces: a.pieces,
                cuts: a.cuts,
                shared: a.shared,
                ends: a.ends.map(|end| own_start + end),
            }
        });
        Staged {
            topic,
            data: data.into_boxed_slice(),
            value_len: value.len(),
            key_end,
            event_id,
            headers,
            audit,
        }
    }

    pub fn value_bytes(&self) -> &[u8] {
        &self.data[..self.value_len]
    }

    pub fn key_bytes(&self) -> Option<&[u8]> {
        self.key_end.map(|end| &self.data[self.value_len..end])
    }

    pub fn header_set(&self) -> &HeaderSet {
        &self.headers
    }

    /// The audit record's encoding: its cuts (`prev`, `seq`, `ts`) and each part's
    /// bytes, in order; None when the core staged no encoded record.
    pub fn audit_parts<'a>(&'a self, py: Python<'_>) -> Option<([usize; 3], Vec<&'a [u8]>)> {
        let audit = self.audit.as_ref()?;
        let mut out = Vec::with_capacity(audit.pieces.len());
        let (mut start, mut k) = (self.key_end.unwrap_or(self.value_len), 0);
        for piece in audit.pieces.iter() {
            match piece {
                Piece::Shared(bytes) => out.push(bytes.as_bytes(py)),
                Piece::Own => {
                    let end = audit.ends[k];
                    out.push(&self.data[start..end]);
                    (start, k) = (end, k + 1);
                }
            }
        }
        Some((audit.cuts, out))
    }

    fn encoding(&self) -> PyResult<&AuditEncoding> {
        self.audit.as_ref().ok_or_else(|| {
            PyAttributeError::new_err("this event's audit record is not encoded by the core")
        })
    }

    fn part_slices<'a>(&'a self, py: Python<'_>) -> PyResult<Vec<&'a [u8]>> {
        self.encoding()?;
        let (_, parts) = self.audit_parts(py).expect("an encoding");
        Ok(parts)
    }
}

#[pymethods]
impl Staged {
    #[getter]
    fn topic<'py>(&self, py: Python<'py>) -> Bound<'py, PyString> {
        self.topic.bind(py).clone()
    }

    #[getter]
    fn key<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        self.key_bytes().map(|k| PyBytes::new(py, k))
    }

    #[getter]
    fn value<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.value_bytes())
    }

    #[getter]
    fn event_id<'py>(&self, py: Python<'py>) -> Bound<'py, PyString> {
        self.event_id.bind(py).clone()
    }

    /// `[(event-id header, event id), policy header, stream header]`, a new list.
    #[getter]
    fn headers<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let set = &self.headers;
        let own = PyTuple::new(
            py,
            [
                set.event_id_name.bind(py).clone(),
                self.event_id.bind(py).clone(),
            ],
        )?;
        PyList::new(
            py,
            [
                own,
                set.shared[0].bind(py).clone(),
                set.shared[1].bind(py).clone(),
            ],
        )
    }

    /// The audit record's parts (bytes), as `CanonicalRecord.parts`: a new tuple.
    #[getter]
    fn parts<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(
            py,
            self.part_slices(py)?.iter().map(|p| PyBytes::new(py, p)),
        )
    }

    /// Where the log splices `prev`, `seq` and `ts`, as `CanonicalRecord.cuts`.
    #[getter]
    fn cuts<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, self.encoding()?.cuts)
    }

    /// The shared members the record names, or None, as `CanonicalRecord.shared`.
    #[getter]
    fn shared<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(self.encoding()?.shared.bind(py).clone())
    }

    /// The audit record's canonical JSON without `prev`, `seq` and `ts`, as
    /// `CanonicalRecord.body`.
    #[getter]
    fn body<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        Ok(PyBytes::new(py, &self.part_slices(py)?.concat()))
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        // Never the value, key or audit parts: they may hold personal data or pseudonyms.
        Ok(format!(
            "Staged(topic={}, event_id={}, {} bytes)",
            self.topic.bind(py).repr()?,
            self.event_id.bind(py).repr()?,
            self.value_len
        ))
    }
}
