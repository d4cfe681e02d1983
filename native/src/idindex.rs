//! The event-id index (`gateway.idempotency.EventIdIndex`) with its ids kept as
//! 128-bit fingerprints in two reused hash tables.
//!
//! The Python index holds two generations of `set[str]`; forgetting one frees its
//! strings one by one under the GIL (98 ms for 2,000,000 ids, measured), and each
//! new generation grows a new table from fresh memory. Here a generation is a table of
//! `u128`: forgetting it clears its control bytes (well under a millisecond for
//! 2,000,000) and keeps its memory for the next one, and lookups and inserts run
//! without the GIL. A fingerprint is two SipHash-1-3 values under keys drawn from the
//! OS at start (std's `RandomState`): a new id matches one of the up to 4,000,000 held
//! by chance with a probability about 2^-106 (it would be taken for a duplicate), and
//! the keys are secret, so ids cannot be chosen to collide. A slot is 17 bytes, where
//! the sets held a string of about 85 bytes per id and 16 bytes per slot.

use std::collections::hash_map::RandomState;
use std::collections::HashSet;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::Mutex;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString};

/// The table's hash of a fingerprint: its low 64 bits (already a keyed hash).
#[derive(Default)]
struct Low64(u64);

impl Hasher for Low64 {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, _bytes: &[u8]) {
        unreachable!("only u128 fingerprints are hashed")
    }

    fn write_u128(&mut self, value: u128) {
        self.0 = value as u64;
    }
}

type Generation = HashSet<u128, BuildHasherDefault<Low64>>;

struct Generations {
    current: Generation,
    previous: Generation,
}

#[pyclass(frozen, module = "fjordgate_native")]
pub struct EventIdIndex {
    capacity: usize,
    keys: (RandomState, RandomState),
    generations: Mutex<Generations>,
}

impl EventIdIndex {
    fn fingerprint(&self, id: &Bound<'_, PyString>) -> PyResult<u128> {
        let print = |bytes: &[u8]| {
            let high = self.keys.0.hash_one(bytes) as u128;
            (high << 64) | self.keys.1.hash_one(bytes) as u128
        };
        match id.to_str() {
            Ok(text) => Ok(print(text.as_bytes())),
            // A lone surrogate (no JSON parser here lets one through): its bytes as
            // Python's surrogatepass writes them, which no valid str's UTF-8 equals.
            Err(_) => {
                let bytes = id.call_method1("encode", ("utf-8", "surrogatepass"))?;
                Ok(print(bytes.downcast::<PyBytes>()?.as_bytes()))
            }
        }
    }

    /// The fingerprints of `ids` (strs; None is skipped when `none_ok`).
    fn fingerprints(&self, ids: &Bound<'_, PyAny>, none_ok: bool) -> PyResult<Vec<u128>> {
        let mut out = Vec::new();
        let one = |out: &mut Vec<u128>, item: Bound<'_, PyAny>| -> PyResult<()> {
            if let Ok(text) = item.downcast::<PyString>() {
                out.push(self.fingerprint(text)?);
            } else if !(none_ok && item.is_none()) {
                return Err(PyTypeError::new_err(format!(
                    "event ids are str, not {}",
                    item.get_type().name()?
                )));
            }
            Ok(())
        };
        // A list (what the committer passes) read in place; any other iterable iterated.
        if let Ok(list) = ids.downcast::<PyList>() {
            out.reserve(list.len());
            for item in list.iter() {
                one(&mut out, item)?;
            }
        } else {
            for item in ids.try_iter()? {
                one(&mut out, item?)?;
            }
        }
        Ok(out)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations> {
        // No code under the lock panics; a poisoned lock still holds whole tables.
        self.generations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[pymethods]
impl EventIdIndex {
    #[new]
    #[pyo3(signature = (capacity = 2_000_000))]
    fn new(capacity: usize) -> PyResult<Self> {
        if capacity < 1 {
            return Err(PyValueError::new_err("capacity must be at least 1"));
        }
        Ok(EventIdIndex {
            capacity,
            keys: (RandomState::new(), RandomState::new()),
            // Both tables at full size from the start: a table that grows rehashes
            // everything it holds (40 ms at 1,000,000 ids, measured); its pages are
            // only touched as ids land in them.
            generations: Mutex::new(Generations {
                current: Generation::with_capacity_and_hasher(capacity, Default::default()),
                previous: Generation::with_capacity_and_hasher(capacity, Default::default()),
            }),
        })
    }

    #[getter]
    fn capacity(&self) -> usize {
        self.capacity
    }

    fn __contains__(&self, event_id: &Bound<'_, PyAny>) -> PyResult<bool> {
        let Ok(text) = event_id.downcast::<PyString>() else {
            return Ok(false);
        };
        let print = self.fingerprint(text)?;
        let generations = self.lock();
        Ok(generations.current.contains(&print) || generations.previous.contains(&print))
    }

    fn __len__(&self) -> usize {
        let generations = self.lock();
        generations.current.len() + generations.previous.len()
    }

    /// Whether none of `event_ids` (strs or None) is known.
    fn isdisjoint(&self, py: Python<'_>, event_ids: &Bound<'_, PyAny>) -> PyResult<bool> {
        let prints = self.fingerprints(event_ids, true)?;
        Ok(py.allow_threads(|| {
            let generations = self.lock();
            !prints
                .iter()
                .any(|p| generations.current.contains(p) || generations.previous.contains(p))
        }))
    }

    /// Remember ids; the oldest generation is forgotten once the current one is full.
    fn add_many(&self, py: Python<'_>, event_ids: &Bound<'_, PyAny>) -> PyResult<()> {
        let prints = self.fingerprints(event_ids, false)?;
        py.allow_threads(|| {
            let mut generations = self.lock();
            let generations = &mut *generations;
            generations.current.extend(prints);
            if generations.current.len() >= self.capacity {
                std::mem::swap(&mut generations.current, &mut generations.previous);
                generations.current.clear(); // keeps its memory for the next generation
            }
        });
        Ok(())
    }

    fn __repr__(&self) -> String {
        format!(
            "EventIdIndex(capacity={}, ids={})",
            self.capacity,
            self.__len__()
        )
    }
}
