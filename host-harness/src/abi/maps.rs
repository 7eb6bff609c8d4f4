//! The proxy-wasm header-map wire format: u32 count, count × (u32 key_len, u32 value_len), then
//! every key and value followed by a NUL byte; and property paths (segments joined by NUL).

/// Encodes a map. An empty map is `None`: the SDK crashes on a lone 0x00 byte (its map decoder reads a count first), and a
/// null pointer means "no pairs" to it.
pub(crate) fn serialize(pairs: &[(String, String)]) -> Option<Vec<u8>> {
    if pairs.is_empty() {
        return None;
    }
    let mut size = 4;
    for (k, v) in pairs {
        size += 8 + k.len() + v.len() + 2;
    }
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    Some(out)
}

/// Decodes a map, `None` when it is malformed.
pub(crate) fn deserialize(bytes: &[u8]) -> Option<Vec<(String, String)>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let word = |at: usize| -> Option<usize> {
        let b = bytes.get(at..at + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let count = word(0)?;
    // Each pair needs at least 10 bytes: refuse counts the buffer cannot hold before allocating.
    if count > bytes.len() / 10 + 1 {
        return None;
    }
    let mut sizes = Vec::with_capacity(count);
    for i in 0..count {
        sizes.push((word(4 + i * 8)?, word(8 + i * 8)?));
    }
    let mut at = 4 + count * 8;
    let mut pairs = Vec::with_capacity(count);
    for (klen, vlen) in sizes {
        let k = bytes.get(at..at + klen)?;
        at += klen + 1;
        let v = bytes.get(at..at + vlen)?;
        at += vlen + 1;
        pairs.push((
            String::from_utf8_lossy(k).into_owned(),
            String::from_utf8_lossy(v).into_owned(),
        ));
    }
    Some(pairs)
}

/// A property path's segments as the ABI passes them, NUL-separated (`request\0path`); a
/// segment may contain dots (`envoy.filters.http.lua`).
pub(crate) fn property_segments(bytes: &[u8]) -> Vec<String> {
    bytes
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_layout() {
        let pairs = vec![
            (":method".to_string(), "GET".to_string()),
            ("x".to_string(), String::new()),
        ];
        let bytes = serialize(&pairs).unwrap();
        assert_eq!(&bytes[0..4], &2u32.to_le_bytes());
        assert_eq!(&bytes[4..8], &7u32.to_le_bytes());
        assert_eq!(bytes.len(), 4 + 16 + (7 + 1 + 3 + 1) + (1 + 1 + 1));
        assert_eq!(deserialize(&bytes).unwrap(), pairs);
        assert_eq!(serialize(&[]), None);
    }

    #[test]
    fn malformed_maps_are_refused() {
        assert_eq!(deserialize(&[5, 0, 0, 0]), None);
        assert_eq!(deserialize(&[0xff, 0xff, 0xff, 0xff, 0, 0]), None);
        let mut bytes = serialize(&[("k".into(), "v".into())]).unwrap();
        bytes.truncate(bytes.len() - 2);
        assert_eq!(deserialize(&bytes), None);
    }

    #[test]
    fn property_paths_are_nul_separated_segments() {
        assert_eq!(property_segments(b"request\0path"), ["request", "path"]);
        assert_eq!(property_segments(b"plugin_name"), ["plugin_name"]);
        assert_eq!(
            property_segments(b"metadata\0envoy.filters.http.lua\0k"),
            ["metadata", "envoy.filters.http.lua", "k"]
        );
    }
}
