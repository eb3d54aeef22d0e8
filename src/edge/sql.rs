//! What every object does with its SQLite storage and its alarm: the `meta` table, integer
//! bindings, storage errors, random ids, and pointing the one alarm at a deadline.

use crate::core::error::{Error, ErrorCode, LogError};
use crate::core::ids::ConnId;
use crate::core::time::Timestamp;
use serde::Deserialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use worker::{SqlStorage, SqlStorageValue, State};

/// The key/value table every object keeps its small state in.
pub(crate) const META_SCHEMA: &str =
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);";

/// Brings an object's schema up to date. `steps[i]` takes the schema from version `i` to
/// `i + 1`; the version reached is kept in `meta` (`schema`). Storage written before versions
/// existed reads as version 0, so every object's first step is its original schema with
/// `IF NOT EXISTS`. Each step and its version are written in one transaction: a step that fails
/// halfway leaves nothing behind, and is tried again whole on the next wake.
pub(crate) fn migrate(state: &State, steps: &'static [&'static str]) -> Result<(), Error> {
    let sql = state.storage().sql();
    run(&sql, META_SCHEMA, Vec::new())?;
    let at = match read_meta(&sql, "schema")? {
        None => 0,
        Some(v) => v.parse::<usize>().map_err(|_| corrupt("schema version"))?,
    };
    if at > steps.len() {
        return Err(Error::new(ErrorCode::Internal, "storage was written by a newer release"));
    }
    for (version, step) in steps.iter().enumerate().skip(at) {
        let sql = sql.clone();
        transaction(state, move || {
            run(&sql, step, Vec::new())?;
            write_meta(&sql, "schema", &(version + 1).to_string())
        })?;
    }
    Ok(())
}

#[wasm_bindgen]
extern "C" {
    /// The storage object, for the method workers-rs 0.8.7 does not bind.
    type TransactionalStorage;

    #[wasm_bindgen(method, catch, js_name = transactionSync)]
    fn transaction_sync(this: &TransactionalStorage, body: &js_sys::Function) -> Result<JsValue, JsValue>;
}

/// Runs `body` in one SQLite transaction (`storage.transactionSync`): an error from it rolls
/// back every write it made.
pub(crate) fn transaction(
    state: &State,
    body: impl FnOnce() -> Result<(), Error> + 'static,
) -> Result<(), Error> {
    let failure = std::rc::Rc::new(std::cell::RefCell::new(None));
    let seen = failure.clone();
    let mut body = Some(body);
    let closure = Closure::<dyn FnMut() -> Result<JsValue, JsValue>>::new(move || {
        match body.take().map_or(Ok(()), |f| f()) {
            Ok(()) => Ok(JsValue::UNDEFINED),
            Err(e) => {
                *seen.borrow_mut() = Some(e);
                // Thrown so the runtime rolls the transaction back.
                Err(JsValue::from_str("rolled back"))
            }
        }
    });
    let storage = state.storage();
    let raw: &TransactionalStorage = storage.as_raw().unchecked_ref();
    let outcome = raw.transaction_sync(closure.as_ref().unchecked_ref());
    if let Some(e) = failure.borrow_mut().take() {
        return Err(e);
    }
    outcome.map(|_| ()).map_err(|_| Error::new(ErrorCode::Internal, "storage transaction failed"))
}

/// Largest integer JS numbers (and so SQLite bindings here) carry exactly.
const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// A storage failure, logged and reported as `internal`.
pub(crate) fn storage(e: worker::Error) -> Error {
    worker::console_error!("storage error: {e}");
    Error::new(ErrorCode::Internal, "storage error")
}

/// Stored data that does not parse.
pub(crate) fn corrupt(what: &str) -> Error {
    Error::new(ErrorCode::Internal, format!("stored {what} is corrupt"))
}

/// Runs a query and deserializes every row.
pub(crate) fn rows<T: for<'de> Deserialize<'de>>(
    sql: &SqlStorage,
    query: &str,
    bindings: Vec<SqlStorageValue>,
) -> Result<Vec<T>, Error> {
    sql.exec(query, bindings).and_then(|c| c.to_array()).map_err(storage)
}

/// Runs a query for a reader the core reads through (a room's log, a user's inbox): its
/// failure is the core's [`LogError`].
pub(crate) fn read<T: for<'de> Deserialize<'de>>(
    sql: &SqlStorage,
    query: &str,
    bindings: Vec<SqlStorageValue>,
) -> Result<Vec<T>, LogError> {
    sql.exec(query, bindings).and_then(|c| c.to_array()).map_err(|e| LogError(e.to_string()))
}

/// Runs a statement whose result is not needed.
pub(crate) fn run(sql: &SqlStorage, query: &str, bindings: Vec<SqlStorageValue>) -> Result<(), Error> {
    sql.exec(query, bindings).map(|_| ()).map_err(storage)
}

pub(crate) fn read_meta(sql: &SqlStorage, key: &str) -> Result<Option<String>, Error> {
    #[derive(Deserialize)]
    struct Row {
        value: String,
    }
    let found: Vec<Row> = rows(sql, "SELECT value FROM meta WHERE key = ?", vec![key.to_owned().into()])?;
    Ok(found.into_iter().next().map(|r| r.value))
}

pub(crate) fn write_meta(sql: &SqlStorage, key: &str, value: &str) -> Result<(), Error> {
    run(
        sql,
        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        vec![key.to_owned().into(), value.to_owned().into()],
    )
}

/// Counts the wake in `meta` (tests read it to prove an object was evicted) and returns it.
pub(crate) fn count_wake(sql: &SqlStorage) -> Result<u64, Error> {
    let wakes = read_meta(sql, "wakes")?.and_then(|w| w.parse::<u64>().ok()).unwrap_or(0) + 1;
    write_meta(sql, "wakes", &wakes.to_string())?;
    Ok(wakes)
}

/// Wakes counted so far.
pub(crate) fn wakes(sql: &SqlStorage) -> Result<u64, Error> {
    Ok(read_meta(sql, "wakes")?.and_then(|w| w.parse().ok()).unwrap_or(0))
}

/// A stored integer (ids, versions, times) as a binding; SQLite integers are signed.
pub(crate) fn safe_integer(n: u64) -> Result<SqlStorageValue, Error> {
    SqlStorageValue::try_from_i64(i64::try_from(n).unwrap_or(i64::MAX)).map_err(storage)
}

/// A stored integer as the JS number a binding passes, refused past what one carries exactly.
pub(crate) fn safe_number(n: u64) -> Result<f64, Error> {
    i64::try_from(n)
        .ok()
        .filter(|n| *n <= MAX_SAFE_INTEGER)
        .map(|n| n as f64)
        .ok_or_else(|| storage(worker::Error::from("integer past 2^53 - 1 cannot be stored")))
}

/// A query bound (`WHERE seq < ?`): values past what JS numbers carry are clamped.
pub(crate) fn bound(n: u64) -> SqlStorageValue {
    SqlStorageValue::from(i64::try_from(n).unwrap_or(MAX_SAFE_INTEGER).min(MAX_SAFE_INTEGER))
}

/// Random bytes drawn per call to the runtime's `crypto.getRandomValues`: one call cost ~25 µs
/// in local workerd, as much as the rest of a connect's id handling, so ids draw from a buffer.
const RANDOM_BATCH: usize = 1024;

thread_local! {
    /// Unused random bytes, consumed from the end.
    static RANDOM: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// 96 random bits as 24 hex characters: connection ids and log epochs.
pub(crate) fn random_id() -> Result<ConnId, Error> {
    const ID_BYTES: usize = 12;
    let bytes = RANDOM.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.len() < ID_BYTES {
            let mut fresh = vec![0u8; RANDOM_BATCH];
            getrandom::fill(&mut fresh).ok()?;
            *pool = fresh;
        }
        let at = pool.len() - ID_BYTES;
        Some(pool.split_off(at))
    });
    let bytes = bytes.ok_or_else(|| Error::new(ErrorCode::Internal, "no randomness available"))?;
    let mut hex = String::with_capacity(2 * ID_BYTES);
    for b in bytes {
        hex.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
        hex.push(char::from_digit(u32::from(b & 0xf), 16).unwrap_or('0'));
    }
    ConnId::parse(&hex).map_err(|_| Error::new(ErrorCode::Internal, "bad random id"))
}

/// Points the object's one alarm at `next` unless `current` (what this instance last set)
/// already says so; returns what the alarm is now. `setAlarm` is not awaited: storage
/// operations apply in call order, so no later event can overtake it, and no borrow is held
/// across an await.
pub(crate) fn sync_alarm(
    state: &State,
    current: Option<Timestamp>,
    next: Option<Timestamp>,
) -> Option<Timestamp> {
    if next == current {
        return current;
    }
    let storage = state.storage();
    let raw = storage.as_raw();
    let result = match next {
        Some(at) => {
            raw.set_alarm(js_sys::Date::new(&JsValue::from_f64(at.as_millis() as f64)), js_sys::Object::new())
        }
        None => raw.delete_alarm(js_sys::Object::new()),
    };
    if result.is_ok() {
        next
    } else {
        current
    }
}
