//! WMI queries as OS-neutral [`Row`]s (`SELECT *`, so a class that lacks a property under some
//! Windows version or Wine still answers with what it has).

use std::collections::HashMap;

use wmi::{Variant, WMIConnection};

use super::mapping::{Row, Value};
use super::{CollectError, Warnings};

/// Most elements of one array property kept.
const MAX_ARRAY: usize = 256;

pub(crate) struct Wmi {
    con: WMIConnection,
    namespace: &'static str,
}

impl Wmi {
    /// A connection to `namespace` (COM is set up for this thread by the `wmi` crate).
    pub(crate) fn connect(namespace: &'static str) -> Result<Self, CollectError> {
        WMIConnection::with_namespace_path(namespace)
            .map(|con| Wmi { con, namespace })
            .map_err(|e| CollectError::Invalid(format!("WMI {namespace}: cannot connect: {e}")))
    }

    pub(crate) fn cimv2() -> Result<Self, CollectError> {
        Self::connect("ROOT\\CIMV2")
    }

    /// The first `max` instances of `class`.
    pub(crate) fn rows(&self, class: &str, max: usize) -> Result<Vec<Row>, CollectError> {
        let raw: Vec<HashMap<String, Variant>> = self
            .con
            .raw_query(format!("SELECT * FROM {class}"))
            .map_err(|e| CollectError::Invalid(format!("WMI {}: {class}: {e}", self.namespace)))?;
        Ok(raw
            .into_iter()
            .take(max)
            .map(|m| m.into_iter().map(|(k, v)| (k, value(v, 0))).collect())
            .collect())
    }

    /// Like [`Wmi::rows`], a failure being a warning and no rows.
    pub(crate) fn rows_or_warn(&self, class: &str, max: usize, warn: &mut Warnings) -> Vec<Row> {
        self.rows(class, max).unwrap_or_else(|e| {
            warn.push(e.to_string());
            Vec::new()
        })
    }
}

fn value(v: Variant, depth: u8) -> Value {
    match v {
        Variant::Empty | Variant::Null | Variant::Unknown(_) | Variant::Object(_) => Value::Null,
        Variant::String(s) => Value::Str(s),
        Variant::I1(n) => Value::Int(n.into()),
        Variant::I2(n) => Value::Int(n.into()),
        Variant::I4(n) => Value::Int(n.into()),
        Variant::I8(n) => Value::Int(n),
        Variant::UI1(n) => Value::UInt(n.into()),
        Variant::UI2(n) => Value::UInt(n.into()),
        Variant::UI4(n) => Value::UInt(n.into()),
        Variant::UI8(n) => Value::UInt(n),
        Variant::R4(f) => Value::Float(f.into()),
        Variant::R8(f) => Value::Float(f),
        Variant::Bool(b) => Value::Bool(b),
        Variant::Array(a) if depth == 0 => Value::Array(
            a.into_iter()
                .take(MAX_ARRAY)
                .map(|v| value(v, depth + 1))
                .collect(),
        ),
        Variant::Array(_) => Value::Null,
    }
}
