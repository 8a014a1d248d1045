//! `#[serde(with = "shardkv_proto::bytes_map")]` for a `BTreeMap<Vec<u8>, Vec<u8>>`.
//!
//! serde writes a `Vec<u8>` as a sequence, one element at a time; bincode then encodes
//! it as a length and the bytes, which is exactly how it encodes a byte string. This
//! module writes keys and values as byte strings (`serde_bytes`), so the encoding is the
//! same (old snapshots and log entries still decode) and bincode copies each key and
//! value whole. `#[serde(with = "serde_bytes")]` does the same for single fields.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serializer};
use serde_bytes::{ByteBuf, Bytes};

/// Serializes `map` with its keys and values as byte strings.
pub fn serialize<S: Serializer>(
    map: &BTreeMap<Vec<u8>, Vec<u8>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_map(
        map.iter()
            .map(|(key, value)| (Bytes::new(key), Bytes::new(value))),
    )
}

/// Deserializes a map written by [`serialize`] (or by serde's default for the type).
pub fn deserialize<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, D::Error> {
    let map = BTreeMap::<ByteBuf, ByteBuf>::deserialize(deserializer)?;
    Ok(map
        .into_iter()
        .map(|(key, value)| (key.into_vec(), value.into_vec()))
        .collect())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Serialize};

    use crate::kv::{Op, Reply};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Fast {
        #[serde(with = "super")]
        kv: BTreeMap<Vec<u8>, Vec<u8>>,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Plain {
        kv: BTreeMap<Vec<u8>, Vec<u8>>,
    }

    /// The operations as they were before `serde_bytes`: their encoding must not change.
    #[derive(Serialize)]
    enum PlainOp {
        Get { key: Vec<u8> },
        Put { key: Vec<u8>, value: Vec<u8> },
        Append { key: Vec<u8>, value: Vec<u8> },
        Delete { key: Vec<u8> },
    }

    #[derive(Serialize)]
    enum PlainReply {
        Value(Option<Vec<u8>>),
        Done,
    }

    fn both<T: Serialize>(value: &T) -> (Vec<u8>, Vec<u8>) {
        use bincode::Options as _;
        let fixint = bincode::serialize(value).expect("encodes");
        let varint = bincode::DefaultOptions::new()
            .serialize(value)
            .expect("encodes");
        (fixint, varint)
    }

    /// Byte-string maps encode exactly as serde's default and decode both ways.
    #[test]
    fn maps_encode_as_before() {
        let kv: BTreeMap<Vec<u8>, Vec<u8>> = [
            (b"a".to_vec(), b"1".to_vec()),
            (Vec::new(), vec![0; 300]),
            (vec![0xff; 3], Vec::new()),
        ]
        .into_iter()
        .collect();
        let fast = Fast { kv: kv.clone() };
        let plain = Plain { kv };
        assert_eq!(both(&fast), both(&plain));
        let bytes = bincode::serialize(&plain).expect("encodes");
        let decoded: Fast = bincode::deserialize(&bytes).expect("decodes");
        assert_eq!(decoded.kv, plain.kv);
    }

    /// Keys and values of operations and replies encode exactly as before.
    #[test]
    fn operations_encode_as_before() {
        let (key, value) = (b"key".to_vec(), vec![7; 300]);
        let pairs = [
            (
                both(&Op::Get { key: key.clone() }),
                both(&PlainOp::Get { key: key.clone() }),
            ),
            (
                both(&Op::Put {
                    key: key.clone(),
                    value: value.clone(),
                }),
                both(&PlainOp::Put {
                    key: key.clone(),
                    value: value.clone(),
                }),
            ),
            (
                both(&Op::Append {
                    key: key.clone(),
                    value: value.clone(),
                }),
                both(&PlainOp::Append {
                    key: key.clone(),
                    value: value.clone(),
                }),
            ),
            (
                both(&Op::Delete { key: key.clone() }),
                both(&PlainOp::Delete { key }),
            ),
            (
                both(&Reply::Value(Some(value.clone()))),
                both(&PlainReply::Value(Some(value))),
            ),
            (both(&Reply::Value(None)), both(&PlainReply::Value(None))),
            (both(&Reply::Done), both(&PlainReply::Done)),
        ];
        for (fast, plain) in pairs {
            assert_eq!(fast, plain);
        }
    }
}
