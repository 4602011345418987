//! Python objects ⇄ JSON values, converted once, in Rust, strictly.
//!
//! Accepted: `None`, `bool`, `int` (64-bit), finite `float`, `str`, `list`, `tuple`,
//! and `dict` with `str` keys. Anything else (a set, bytes, an arbitrary object, NaN) is
//! refused with a `SerializationError` that names the type and where it was found.

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde_json::{Map, Number, Value};

use crate::errors::raise;

/// Deepest nesting accepted.
const MAX_DEPTH: usize = 256;

/// Converts a Python object to JSON; `what` names it in errors (e.g. "args").
pub fn py_to_json(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Value> {
    to_json(obj, what, 0)
}

fn type_error(obj: &Bound<'_, PyAny>, path: &str, detail: &str) -> PyErr {
    let ty = obj
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into());
    raise(
        obj.py(),
        "SerializationError",
        format!("{path}: object of type {ty} is not JSON serializable{detail}"),
    )
}

/// A `str` holding a lone surrogate: Python text that is not Unicode, so not JSON.
fn not_unicode(obj: &Bound<'_, PyAny>, path: &str) -> PyErr {
    raise(
        obj.py(),
        "SerializationError",
        format!("{path}: str holds a lone surrogate (not valid Unicode), so it is not JSON"),
    )
}

fn to_json(obj: &Bound<'_, PyAny>, path: &str, depth: usize) -> PyResult<Value> {
    if depth > MAX_DEPTH {
        return Err(raise(
            obj.py(),
            "SerializationError",
            format!("{path}: nested deeper than {MAX_DEPTH} levels"),
        ));
    }
    if obj.is_none() {
        return Ok(Value::Null);
    }
    // Exact-type checks first: the common cases cost one pointer comparison each.
    if let Ok(s) = obj.cast_exact::<PyString>() {
        let text = s.to_str().map_err(|_| not_unicode(obj, path))?;
        return Ok(Value::String(text.to_owned()));
    }
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if obj.is_instance_of::<PyInt>() {
        if let Ok(i) = obj.extract::<i64>() {
            return Ok(Value::Number(i.into()));
        }
        if let Ok(u) = obj.extract::<u64>() {
            return Ok(Value::Number(u.into()));
        }
        return Err(type_error(obj, path, " (integer out of 64-bit range)"));
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        let v = f.value();
        return Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| type_error(obj, path, " (NaN and infinity are not JSON)"));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        let text = s.to_str().map_err(|_| not_unicode(obj, path))?;
        return Ok(Value::String(text.to_owned()));
    }
    if let Ok(list) = obj.cast::<PyList>() {
        let mut out = Vec::with_capacity(list.len());
        for (i, item) in list.iter().enumerate() {
            out.push(to_json(&item, &format!("{path}[{i}]"), depth + 1)?);
        }
        return Ok(Value::Array(out));
    }
    if let Ok(tuple) = obj.cast::<PyTuple>() {
        let mut out = Vec::with_capacity(tuple.len());
        for (i, item) in tuple.iter().enumerate() {
            out.push(to_json(&item, &format!("{path}[{i}]"), depth + 1)?);
        }
        return Ok(Value::Array(out));
    }
    if let Ok(dict) = obj.cast::<PyDict>() {
        let mut out = Map::with_capacity(dict.len());
        for (k, v) in dict.iter() {
            let Ok(key) = k.cast::<PyString>() else {
                return Err(type_error(
                    &k,
                    &format!("{path} key"),
                    " (dict keys must be str)",
                ));
            };
            let key = key
                .to_str()
                .map_err(|_| not_unicode(&k, &format!("{path} key")))?
                .to_owned();
            let value = to_json(&v, &format!("{path}[{key:?}]"), depth + 1)?;
            out.insert(key, value);
        }
        return Ok(Value::Object(out));
    }
    Err(type_error(obj, path, ""))
}

/// Converts JSON to Python objects.
pub fn json_to_py<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into_pyobject(py)?.into_any()
            } else if let Some(u) = n.as_u64() {
                u.into_pyobject(py)?.into_any()
            } else {
                n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any()
            }
        }
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(json_to_py(py, item)?)?;
            }
            list.into_any()
        }
        Value::Object(map) => {
            let dict = PyDict::new(py);
            for (k, v) in map {
                dict.set_item(k, json_to_py(py, v)?)?;
            }
            dict.into_any()
        }
    })
}

/// Converts a JSON array to a Python tuple (positional arguments).
pub fn json_to_args<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyTuple>> {
    let items = match value {
        Value::Array(items) => items.as_slice(),
        Value::Null => &[],
        _ => {
            return Err(raise(
                py,
                "SerializationError",
                "stored args are not a JSON array".into(),
            ))
        }
    };
    let objs = items
        .iter()
        .map(|v| json_to_py(py, v))
        .collect::<PyResult<Vec<_>>>()?;
    PyTuple::new(py, objs)
}

/// Converts a JSON object to a Python dict (keyword arguments).
pub fn json_to_kwargs<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyDict>> {
    match value {
        Value::Object(_) => Ok(json_to_py(py, value)?.cast_into::<PyDict>()?),
        Value::Null => Ok(PyDict::new(py)),
        _ => Err(raise(
            py,
            "SerializationError",
            "stored kwargs are not a JSON object".into(),
        )),
    }
}
