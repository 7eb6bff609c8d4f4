//! Decoding the proxy-wasm header-map wire format (u32 count, count × (u32 key_len, u32 value_len),
//! then each key and value followed by NUL) from bytes a host or a server controls. The SDK's own
//! decoder unwraps `String::from_utf8` and slices unchecked: one Latin-1 header value in an S3
//! answer would trap the worker. This one is bounds-checked and lossy.

/// The pairs that decode; decoding stops at the first malformed entry.
pub fn decode_lossy(bytes: &[u8]) -> Vec<(String, String)> {
    let word = |at: usize| -> Option<usize> {
        let b = bytes.get(at..at.checked_add(4)?)?;
        Some(u32::from_le_bytes(b.try_into().ok()?) as usize)
    };
    let Some(count) = word(0) else {
        return Vec::new();
    };
    // Each pair takes at least 10 bytes: never trust `count` for an allocation.
    let mut pairs = Vec::with_capacity(count.min(bytes.len() / 10));
    let mut data = match count.checked_mul(8).and_then(|n| n.checked_add(4)) {
        Some(d) => d,
        None => return pairs,
    };
    for i in 0..count {
        let (Some(klen), Some(vlen)) = (word(4 + i * 8), word(8 + i * 8)) else {
            break;
        };
        let Some(key) = take(bytes, &mut data, klen) else {
            break;
        };
        let Some(value) = take(bytes, &mut data, vlen) else {
            break;
        };
        pairs.push((
            String::from_utf8_lossy(key).into_owned(),
            String::from_utf8_lossy(value).into_owned(),
        ));
    }
    pairs
}

/// `len` bytes at `*at`, then skips them and their NUL terminator.
fn take<'a>(bytes: &'a [u8], at: &mut usize, len: usize) -> Option<&'a [u8]> {
    let end = at.checked_add(len)?;
    let slice = bytes.get(*at..end)?;
    *at = end.checked_add(1)?;
    Some(slice)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
        for (k, v) in pairs {
            out.extend((k.len() as u32).to_le_bytes());
            out.extend((v.len() as u32).to_le_bytes());
        }
        for (k, v) in pairs {
            out.extend(*k);
            out.push(0);
            out.extend(*v);
            out.push(0);
        }
        out
    }

    #[test]
    fn decodes_the_wire_format_and_replaces_invalid_utf8() {
        let bytes = encode(&[
            (b":status", b"200"),
            (b"x-latin1", b"caf\xe9"),
            (b"empty", b""),
        ]);
        assert_eq!(
            decode_lossy(&bytes),
            vec![
                (":status".to_string(), "200".to_string()),
                ("x-latin1".to_string(), "caf\u{fffd}".to_string()),
                ("empty".to_string(), String::new()),
            ]
        );
    }

    #[test]
    fn malformed_input_never_panics_and_keeps_what_decoded() {
        let bytes = encode(&[(b"a", b"1"), (b"b", b"2")]);
        for cut in 0..bytes.len() {
            let got = decode_lossy(&bytes[..cut]);
            assert!(got.len() <= 2, "cut {cut}");
        }
        assert_eq!(decode_lossy(&bytes[..bytes.len() - 3]).len(), 1);
        assert!(decode_lossy(&[]).is_empty());
        // A count the buffer cannot hold allocates nothing large and decodes nothing.
        assert!(decode_lossy(&[0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0]).is_empty());
    }
}
