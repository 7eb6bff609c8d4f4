//! `join` for the module's few lists of strings: the standard `[S]::join` is ~1 KB of code per
//! element type (`String`, `&str`); this loop is a few dozen bytes (BENCHMARKS.md, "Issue 25,
//! lean7").

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

#[cfg(test)]
mod tests {
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
