//! The JSON form of a record, one object per line in `runnel log read --json`.
//!
//! ```text
//! {"offset":0,"timestamp":1795255200000,"key":null,"value":"hello","headers":[]}
//! {"offset":1,"timestamp":1795255200000,"key":null,"value":"caf\ufffd",
//!  "value_base64":"Y2Fm6Q==","headers":[{"key":"trace","value":"abc"}]}
//! ```
//!
//! Bytes become text so the common case reads at a glance and `jq .value` works: `key`,
//! `value` and a header's `value` are UTF-8 strings, with invalid sequences replaced by
//! U+FFFD (lossy), or `null` when absent. Whenever that replacement happened, a sibling
//! `key_base64` / `value_base64` holds the exact bytes (standard alphabet, padded), so no
//! record is ever unrecoverable from the JSON; for valid UTF-8 it is left out. `timestamp`
//! is milliseconds since the Unix epoch (-1: none).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use log_core::{Header, Record};
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct JsonRecord {
    pub offset: u64,
    pub timestamp: i64,
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_base64: Option<String>,
    pub value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_base64: Option<String>,
    pub headers: Vec<JsonHeader>,
}

#[derive(Debug, Serialize)]
pub struct JsonHeader {
    pub key: String,
    pub value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_base64: Option<String>,
}

impl JsonRecord {
    pub fn new(record: &Record) -> JsonRecord {
        let (key, key_base64) = text(record.key.as_deref());
        let (value, value_base64) = text(record.value.as_deref());
        JsonRecord {
            offset: record.offset.0,
            timestamp: record.timestamp,
            key,
            key_base64,
            value,
            value_base64,
            headers: record.headers.iter().map(JsonHeader::new).collect(),
        }
    }
}

impl JsonHeader {
    fn new(header: &Header) -> JsonHeader {
        let (value, value_base64) = text(header.value.as_deref());
        JsonHeader {
            key: String::from_utf8_lossy(&header.key).into_owned(),
            value,
            value_base64,
        }
    }
}

/// The lossy text of `bytes`, and their base64 when the text is not exact.
fn text(bytes: Option<&[u8]>) -> (Option<String>, Option<String>) {
    let Some(bytes) = bytes else {
        return (None, None);
    };
    match std::str::from_utf8(bytes) {
        Ok(text) => (Some(text.to_owned()), None),
        Err(_) => (
            Some(String::from_utf8_lossy(bytes).into_owned()),
            Some(STANDARD.encode(bytes)),
        ),
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use log_core::Offset;

    use super::*;

    #[test]
    fn utf8_stays_text_and_other_bytes_also_get_base64() {
        let record = Record {
            offset: Offset(7),
            timestamp: 1_000,
            key: None,
            value: Some(Bytes::from_static(b"caf\xe9")),
            headers: vec![Header {
                key: Bytes::from_static(b"trace"),
                value: Some(Bytes::from_static(b"abc")),
            }],
        };
        let json = serde_json::to_string(&JsonRecord::new(&record)).unwrap();
        assert_eq!(
            json,
            r#"{"offset":7,"timestamp":1000,"key":null,"value":"caf�","value_base64":"Y2Fm6Q==","headers":[{"key":"trace","value":"abc"}]}"#
        );
    }
}
