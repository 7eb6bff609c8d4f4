//! S3's XML bodies: error documents and ListObjectsV2 results, written the way S3 writes them
//! (boto3's parser is strict about element names, not about whitespace).

/// Escapes text for an XML element body or attribute.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            _ => out.push(c),
        }
    }
    out
}

/// `<Error><Code>..</Code><Message>..</Message>[<Resource>..]<RequestId>..</RequestId></Error>`.
pub fn error_body(code: &str, message: &str, resource: &str, request_id: &str) -> String {
    error_body_with(code, message, resource, request_id, &[])
}

/// An error document with extra elements (e.g. `Key`, `BucketName`, `StringToSign`), as S3 adds.
pub fn error_body_with(
    code: &str,
    message: &str,
    resource: &str,
    request_id: &str,
    extra: &[(&str, String)],
) -> String {
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error>");
    s.push_str(&format!("<Code>{}</Code>", escape(code)));
    s.push_str(&format!("<Message>{}</Message>", escape(message)));
    for (name, value) in extra {
        s.push_str(&format!("<{name}>{}</{name}>", escape(value)));
    }
    if !resource.is_empty() {
        s.push_str(&format!("<Resource>{}</Resource>", escape(resource)));
    }
    s.push_str(&format!("<RequestId>{}</RequestId>", escape(request_id)));
    s.push_str("</Error>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_escape_their_text() {
        let b = error_body("NoSuchKey", "a<b & 'c'", "/b/k", "R1");
        assert!(b.contains("<Code>NoSuchKey</Code>"));
        assert!(b.contains("<Message>a&lt;b &amp; &apos;c&apos;</Message>"));
        assert!(b.contains("<Resource>/b/k</Resource><RequestId>R1</RequestId></Error>"));
    }
}
