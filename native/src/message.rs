//! The message the compiled core makes for each event it publishes: what
//! `gateway.record.OutgoingMessage` holds, as one object.
//!
//! An `OutgoingMessage` made by the core was five Python objects per event (the
//! message, its value and key bytes, the header list and the event-id header's
//! tuple), each allocated, tracked by the collector and freed; this is one, with the
//! value and key in one buffer, and the compiled producer (kafka.rs) reads it without
//! an attribute lookup. Read from Python it answers as an `OutgoingMessage` does
//! (`topic`, `key`, `value`, `headers`, `event_id`), each made when read: the local log
//! and confluent-kafka's producer read it that way.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

/// The headers every message of one core carries: the event-id header's name, and the
/// policy and stream headers (`(name, value)` tuples, shared).
pub struct HeaderSet {
    pub event_id_name: Py<PyString>,
    pub shared: [Py<PyTuple>; 2],
}

#[pyclass(frozen, module = "fjordgate_native")]
pub struct Message {
    pub topic: Py<PyString>,
    /// The value, then the key (if any).
    data: Box<[u8]>,
    value_len: usize,
    has_key: bool,
    pub event_id: Py<PyString>,
    headers: std::sync::Arc<HeaderSet>,
}

impl Message {
    pub fn new(
        topic: Py<PyString>,
        value: &[u8],
        key: Option<&[u8]>,
        event_id: Py<PyString>,
        headers: std::sync::Arc<HeaderSet>,
    ) -> Self {
        let mut data = Vec::with_capacity(value.len() + key.map_or(0, <[u8]>::len));
        data.extend_from_slice(value);
        if let Some(key) = key {
            data.extend_from_slice(key);
        }
        Message {
            topic,
            data: data.into_boxed_slice(),
            value_len: value.len(),
            has_key: key.is_some(),
            event_id,
            headers,
        }
    }

    pub fn value_bytes(&self) -> &[u8] {
        &self.data[..self.value_len]
    }

    pub fn key_bytes(&self) -> Option<&[u8]> {
        self.has_key.then(|| &self.data[self.value_len..])
    }

    pub fn header_set(&self) -> &HeaderSet {
        &self.headers
    }
}

#[pymethods]
impl Message {
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

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        // Never the value or key: a minimised event may still hold personal data.
        Ok(format!(
            "Message(topic={}, event_id={}, {} bytes)",
            self.topic.bind(py).repr()?,
            self.event_id.bind(py).repr()?,
            self.value_len
        ))
    }
}
