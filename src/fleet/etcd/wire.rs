//! The etcd v3 JSON gateway's wire format: request bodies, reply shapes,
//! base64 keys and values, int64 fields as JSON strings. Every reply is
//! untrusted input: decoding fails with an [`EtcdError::Reply`], never a
//! panic.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;
use serde_json::{Value, json};

use super::stream::REFUSED;
use super::{EtcdError, Event, Kv, MAX_VALUE, oversize, refused};

pub(super) fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

pub(super) fn unb64_key(s: &str) -> Result<Vec<u8>, EtcdError> {
    unb64(s, "key")
}

fn unb64(s: &str, what: &str) -> Result<Vec<u8>, EtcdError> {
    B64.decode(s)
        .map_err(|e| EtcdError::Reply(format!("{what} is not base64: {e}")))
}

/// The end of the key range that holds every key starting with `prefix`
/// (etcd's `range_end`: the prefix with its last byte below 0xff plus one;
/// `\0` = every key when the prefix is empty or all 0xff).
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// An int64 the gateway sends as a string (proto3 JSON), or a number;
/// absent means 0.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct I64(pub(crate) i64);

impl<'de> Deserialize<'de> for I64 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<I64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            S(String),
            N(i64),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(I64(n)),
            Raw::S(s) => s
                .parse()
                .map(I64)
                .map_err(|_| serde::de::Error::custom(format!("not an int64: {s:?}"))),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct Header {
    pub(crate) revision: I64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawKv {
    pub(crate) key: String,
    pub(crate) value: String,
    pub(crate) create_revision: I64,
    pub(crate) mod_revision: I64,
    pub(crate) lease: I64,
}

impl RawKv {
    /// The key; a value over [`MAX_VALUE`] is refused (counted, logged) and
    /// comes out empty, which no reader of the fleet's keys accepts.
    pub(super) fn decode(&self) -> Result<Kv, EtcdError> {
        // A key too long to keep (see `stream`) is no key of the fleet's.
        let key = if self.key == REFUSED {
            Vec::new()
        } else {
            unb64(&self.key, "key")?
        };
        let pad = self
            .value
            .bytes()
            .rev()
            .take(2)
            .filter(|&b| b == b'=')
            .count();
        let size = (self.value.len() / 4 * 3).saturating_sub(pad);
        let value = if self.value == REFUSED {
            refused(&key, &format!("over {MAX_VALUE}"));
            oversize(&key, self.mod_revision.0);
            Vec::new()
        } else if size > MAX_VALUE {
            refused(&key, &size.to_string());
            oversize(&key, self.mod_revision.0);
            Vec::new()
        } else {
            unb64(&self.value, "value")?
        };
        Ok(Kv {
            key,
            value,
            create_revision: self.create_revision.0,
            mod_revision: self.mod_revision.0,
            lease: self.lease.0,
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RangeReply {
    pub(crate) header: Header,
    pub(crate) kvs: Vec<RawKv>,
    /// More keys than the request's limit.
    pub(crate) more: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RevReply {
    pub(crate) header: Header,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct TxnReply {
    pub(crate) header: Header,
    pub(crate) succeeded: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct LeaseReply {
    #[serde(rename = "ID")]
    pub(crate) id: I64,
    #[serde(rename = "TTL")]
    pub(crate) ttl: I64,
}

/// `/v3/auth/authenticate`'s reply.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct AuthReply {
    pub(crate) token: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct Streamed<T> {
    pub(crate) result: Option<T>,
    pub(crate) error: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawEvent {
    #[serde(rename = "type")]
    pub(crate) kind: String,
    pub(crate) kv: RawKv,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct WatchReply {
    pub(crate) header: Header,
    pub(crate) created: bool,
    pub(crate) canceled: bool,
    pub(crate) compact_revision: I64,
    pub(crate) cancel_reason: String,
    pub(crate) events: Vec<RawEvent>,
}

impl WatchReply {
    pub(super) fn decode_events(&self) -> Result<Vec<Event>, EtcdError> {
        self.events
            .iter()
            .map(|e| {
                let kv = e.kv.decode()?;
                match e.kind.as_str() {
                    "" | "PUT" => Ok(Event::Put(kv)),
                    "DELETE" => Ok(Event::Delete(kv)),
                    other => Err(EtcdError::Reply(format!(
                        "unknown watch event type {other:?}"
                    ))),
                }
            })
            .collect()
    }
}

/// Decode a whole reply body into `T`.
pub(super) fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, EtcdError> {
    serde_json::from_slice(body).map_err(|e| EtcdError::Reply(format!("bad reply: {e}")))
}

/// The gateway's error object (`{"error":..,"message":..,"code":N}`), as
/// (gRPC code, message), if `body` is one.
pub(super) fn grpc_error(body: &[u8]) -> Option<(i64, String)> {
    #[derive(Deserialize)]
    struct E {
        #[serde(default)]
        code: i64,
        #[serde(default)]
        message: String,
        #[serde(default)]
        error: Value,
    }
    let e: E = serde_json::from_slice(body).ok()?;
    let msg = if e.message.is_empty() {
        e.error.as_str().unwrap_or_default().to_string()
    } else {
        e.message
    };
    (e.code != 0 || !msg.is_empty()).then_some((e.code, msg))
}

pub(super) fn put_body(key: &[u8], value: &[u8], lease: Option<i64>) -> Value {
    let mut v = json!({"key": b64(key), "value": b64(value)});
    if let Some(l) = lease {
        v["lease"] = json!(l.to_string());
    }
    v
}

/// A txn with one comparison on `key` and one request on success.
pub(super) fn txn_body(key: &[u8], target: &str, field: &str, value: i64, success: Value) -> Value {
    json!({
        "compare": [{"key": b64(key), "target": target, "result": "EQUAL", field: value.to_string()}],
        "success": [success],
    })
}
