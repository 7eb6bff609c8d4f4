//! `config-supersedes`: the configs an export replaced, carried in the object's metadata so any
//! node can tell that its own config was superseded without comparing clocks (docs/election.md,
//! "Which config is newer"). The value is a comma-separated list of short content hashes (the
//! first 12 hex digits of `config-sha256`, as log lines print them), newest first, at most
//! `SUPERSEDES_MAX`: the object each write replaced, then what that object had replaced.

/// Hashes an object remembers: about 400 bytes of the 2 KB S3 allows for user metadata.
pub const SUPERSEDES_MAX: usize = 32;

/// Hex digits kept of each hash (48 bits: a chance match is out of reach for a config history).
pub const SHORT_HASH_LEN: usize = 12;

/// The short form of a content hash; `None` for anything that is not lowercase hex of at least
/// `SHORT_HASH_LEN` digits (a foreign or hostile value is ignored, never echoed).
pub fn short_hash(hash: &str) -> Option<&str> {
    let short = hash.get(..SHORT_HASH_LEN)?;
    short
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        .then_some(short)
}

/// The list as stored metadata carries it (bounded; entries that are not 12 lowercase hex digits
/// dropped).
pub fn parse(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|h| h.len() == SHORT_HASH_LEN && short_hash(h).is_some())
        .take(SUPERSEDES_MAX)
        .map(str::to_string)
        .collect()
}

pub fn render(list: &[String]) -> String {
    crate::text::join(list, ",")
}

/// What an object with content `sha256_hex` that superseded `supersedes` stands for in the lineage
/// of the next write: itself first, then its own list (as `NodeRecord::lineage` keeps it).
pub fn of_object(sha256_hex: Option<&str>, supersedes: &[String]) -> Vec<String> {
    let mut out: Vec<String> = sha256_hex
        .and_then(short_hash)
        .map(str::to_string)
        .into_iter()
        .collect();
    for h in supersedes {
        if !out.contains(h) {
            out.push(h.clone());
        }
    }
    out.truncate(SUPERSEDES_MAX);
    out
}

/// The `config-supersedes` of a write of `ours` over an object whose lineage is `replaced`
/// (`of_object`): our own hash is left out (a rollback supersedes the configs after it, not
/// itself).
pub fn for_write(ours: &str, replaced: &[String]) -> Vec<String> {
    let own = short_hash(ours);
    replaced
        .iter()
        .filter(|h| Some(h.as_str()) != own)
        .take(SUPERSEDES_MAX)
        .cloned()
        .collect()
}

/// Whether the list names the config with content hash `hash`.
pub fn names(list: &[String], hash: &str) -> bool {
    short_hash(hash).is_some_and(|s| list.iter().any(|h| h == s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(c: char) -> String {
        std::iter::repeat_n(c, 64).collect()
    }

    #[test]
    fn a_write_supersedes_the_replaced_object_and_its_list_without_itself() {
        let (a, b, c) = (h('a'), h('b'), h('c'));
        let after_a = for_write(&b, &of_object(Some(&a), &[]));
        assert_eq!(after_a, ["aaaaaaaaaaaa"]);
        let after_b = for_write(&c, &of_object(Some(&b), &after_a));
        assert_eq!(after_b, ["bbbbbbbbbbbb", "aaaaaaaaaaaa"]);
        // A rollback to A: A is not listed as superseding itself.
        let rollback = for_write(&a, &of_object(Some(&c), &after_b));
        assert_eq!(rollback, ["cccccccccccc", "bbbbbbbbbbbb"]);
        assert!(names(&rollback, &c) && !names(&rollback, &a));
        // An object without our metadata (Kong Enterprise's) adds nothing.
        assert!(for_write(&a, &of_object(None, &[])).is_empty());
    }

    #[test]
    fn the_list_is_bounded_and_malformed_entries_are_dropped() {
        let long: Vec<String> = (0..100).map(|i| format!("{i:012x}")).collect();
        let written = for_write(&h('f'), &of_object(Some(&h('e')), &long));
        assert_eq!(written.len(), SUPERSEDES_MAX);
        assert_eq!(written[0], "eeeeeeeeeeee");
        let parsed = parse(&format!(
            "{}, not-hex ,ABCDEF012345,0123456789ab0,{}",
            render(&long),
            "0123"
        ));
        assert_eq!(parsed.len(), SUPERSEDES_MAX);
        assert_eq!(
            parse("0123456789ab, 0123456789ab0, x, ABCDEFABCDEF"),
            ["0123456789ab"]
        );
        assert!(parse("").is_empty());
    }
}
