//! A file format that never lies: a header line with the format, the body's length and its
//! SHA-256, then the JSON body. A torn, truncated or edited file is detected and reported,
//! never half-read.
use serde::{Serialize, de::DeserializeOwned};
use sha2::{Digest, Sha256};

const MAGIC: &str = "linkrt-state";

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Encodes `value` as `linkrt-state <kind> <len> <sha256>\n<json>`.
pub fn encode<T: Serialize>(kind: &str, value: &T) -> Vec<u8> {
    let body = serde_json::to_vec(value).expect("serializable");
    let mut out = format!("{MAGIC} {kind} {} {}\n", body.len(), hex(&Sha256::digest(&body))).into_bytes();
    out.extend_from_slice(&body);
    out
}

/// Decodes what [`encode`] wrote; the error says what is wrong with the file.
pub fn decode<T: DeserializeOwned>(kind: &str, data: &[u8]) -> Result<T, String> {
    let nl = data
        .iter()
        .position(|b| *b == b'\n')
        .ok_or("no header line (truncated or not a linkrt record)")?;
    let header = std::str::from_utf8(&data[..nl]).map_err(|_| "the header is not text")?;
    let body = &data[nl + 1..];
    let f: Vec<&str> = header.split(' ').collect();
    if f.len() != 4 || f[0] != MAGIC {
        return Err(format!("bad header {header:?}"));
    }
    if f[1] != kind {
        return Err(format!("a {} record where a {kind} record was expected", f[1]));
    }
    let len: usize = f[2].parse().map_err(|_| format!("bad length {:?}", f[2]))?;
    if body.len() != len {
        return Err(format!("truncated: {} of {len} bytes", body.len()));
    }
    if hex(&Sha256::digest(body)) != f[3] {
        return Err("checksum mismatch (the file was changed or torn)".into());
    }
    serde_json::from_slice(body).map_err(|e| format!("invalid content: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torn_and_edited_records_are_detected() {
        let v = serde_json::json!({"a": 1, "b": "two"});
        let data = encode("test", &v);
        assert_eq!(decode::<serde_json::Value>("test", &data).unwrap(), v);
        for cut in [0, 5, data.len() / 2, data.len() - 1] {
            assert!(
                decode::<serde_json::Value>("test", &data[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut edited = data.clone();
        let n = edited.len();
        edited[n - 3] ^= 1;
        assert!(
            decode::<serde_json::Value>("test", &edited)
                .unwrap_err()
                .contains("checksum")
        );
        assert!(
            decode::<serde_json::Value>("other", &data)
                .unwrap_err()
                .contains("expected")
        );
        assert!(decode::<serde_json::Value>("test", b"{\"a\":1}").is_err());
    }
}
