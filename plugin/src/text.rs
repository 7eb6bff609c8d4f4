//! `join` for the module's few lists of strings: the standard `[S]::join` is ~1 KB of code per
//! element type (`String`, `&str`); this loop is a few dozen bytes (BENCHMARKS.md, "Issue 25,
//! lean7"). The searches below stand in for std's searchers, which are kilobytes of code for the
//! module's few short texts (BENCHMARKS.md, "Issue 25, lean8").

/// `parts` with `sep` between them, as `[S]::join(sep)`.
pub fn join<S: AsRef<str>>(parts: &[S], sep: &str) -> String {
    let mut out = String::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push_str(sep);
        }
        out.push_str(part.as_ref());
    }
    out
}

/// Where `needle` first starts in `hay` (`str::find` with a `&str` pattern): the standard two-way
/// searcher is ~2.3 KB of code; the texts searched here are short (URLs, a PEM key, S3's XML
/// answers), so a first-byte scan and a compare suffice (BENCHMARKS.md, "Issue 25, lean8").
#[inline(never)]
pub fn find(hay: &str, needle: &str) -> Option<usize> {
    let Some((&first, rest)) = needle.as_bytes().split_first() else {
        return Some(0);
    };
    let bytes = hay.as_bytes();
    let mut from = 0;
    while let Some(off) = bytes.get(from..)?.iter().position(|&b| b == first) {
        let at = from + off;
        if bytes.get(at + 1..)?.starts_with(rest) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// `s.split_once(sep)` for a `&str` separator, through [`find`].
pub fn split_once<'a>(s: &'a str, sep: &str) -> Option<(&'a str, &'a str)> {
    let at = find(s, sep)?;
    Some((s.get(..at)?, s.get(at + sep.len()..)?))
}

/// `s.rsplit_once(sep)` for an ASCII `sep`: the standard reverse `char` searcher (with its
/// `memrchr`) is ~800 bytes of code for the module's few uses (BENCHMARKS.md, "Issue 25, lean8").
pub fn rsplit_once_ascii(s: &str, sep: u8) -> Option<(&str, &str)> {
    let at = s.bytes().rposition(|b| b == sep)?;
    Some((s.get(..at)?, s.get(at + 1..)?))
}

/// `s.trim_end_matches(c)` for an ASCII `c`, through a byte loop for the same reason.
pub fn trim_end_ascii(s: &str, c: u8) -> &str {
    let mut end = s.len();
    while end > 0 && s.as_bytes().get(end - 1) == Some(&c) {
        end -= 1;
    }
    s.get(..end).unwrap_or(s)
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_as_the_standard_find() {
        let hays = [
            "",
            "a",
            "abc",
            "aab",
            "abab",
            "x://y://z",
            "-----END é-----",
            "ééa",
        ];
        let needles = ["", "a", "b", "ab", "abc", "://", "-----", "é", "éa", "zz"];
        for hay in hays {
            for needle in needles {
                assert_eq!(
                    super::find(hay, needle),
                    hay.find(needle),
                    "{hay:?} {needle:?}"
                );
                assert_eq!(super::split_once(hay, needle), hay.split_once(needle));
            }
        }
    }

    #[test]
    fn splits_and_trims_from_the_end_as_the_standard_ones() {
        for s in ["", "/", "a", "a/", "/a", "a/b/c", "é/ü//", "h:1:2", "::"] {
            for sep in [b'/', b':'] {
                let ch = char::from(sep);
                assert_eq!(super::rsplit_once_ascii(s, sep), s.rsplit_once(ch), "{s:?}");
                assert_eq!(
                    super::trim_end_ascii(s, sep),
                    s.trim_end_matches(ch),
                    "{s:?}"
                );
            }
        }
    }

    #[test]
    fn joins_as_the_standard_join() {
        let lists: [&[&str]; 5] = [&[], &[""], &["a"], &["a", "b"], &["", "x", "", "yz"]];
        for parts in lists {
            for sep in ["", "/", ", "] {
                assert_eq!(super::join(parts, sep), parts.join(sep));
                let owned: Vec<String> = parts.iter().map(|s| s.to_string()).collect();
                assert_eq!(super::join(&owned, sep), owned.join(sep));
            }
        }
    }
}
