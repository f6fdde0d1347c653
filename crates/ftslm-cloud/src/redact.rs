//! URLs as ftslm prints them: without credentials. An index or endpoint
//! given as `https://user:SECRET@host/…` (pip's own convention), or a
//! presigned URL's `X-Amz-Signature=…`, must not reach an error message or
//! a log line.

/// Query parameters whose values are secrets (compared case-insensitively).
const SECRET_PARAMS: &[&str] = &[
    "token",
    "access_token",
    "sig",
    "signature",
    "password",
    "key",
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
];

/// `text` with every URL's userinfo and secret query values replaced by `***`.
pub fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, url_and_after) = rest.split_at(at + 3);
        out.push_str(before);
        let end = url_and_after
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '`'))
            .unwrap_or(url_and_after.len());
        // Sentence punctuation after a URL is not part of it.
        let end = url_and_after[..end]
            .trim_end_matches([':', ',', '.', ';', ')'])
            .len();
        let (url, after) = url_and_after.split_at(end);
        out.push_str(&redact_one(url));
        rest = after;
    }
    out.push_str(rest);
    out
}

/// One URL after its `scheme://`.
fn redact_one(url: &str) -> String {
    let authority_end = url.find(['/', '?', '#']).unwrap_or(url.len());
    let (authority, path) = url.split_at(authority_end);
    let authority = match authority.rfind('@') {
        Some(at) => format!("***@{}", &authority[at + 1..]),
        None => authority.to_string(),
    };
    let Some(q) = path.find('?') else {
        return authority + path;
    };
    let (path, query) = path.split_at(q + 1);
    let (query, fragment) = match query.find('#') {
        Some(h) => query.split_at(h),
        None => (query, ""),
    };
    let params: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if SECRET_PARAMS.iter().any(|s| s.eq_ignore_ascii_case(k)) => {
                format!("{k}=***")
            }
            _ => pair.to_string(),
        })
        .collect();
    format!("{authority}{path}{}{fragment}", params.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_and_signatures_never_survive() {
        let text = "could not reach http://user:SECRET@host:8080/pypi/x/json?a=1&token=TOK: \
                    error for https://hub.example/r?X-Amz-Signature=SIG&b=2#f, then ftp://plain/x";
        let redacted = redact_urls(text);
        for secret in ["SECRET", "TOK", "SIG", "user:"] {
            assert!(!redacted.contains(secret), "{redacted}");
        }
        assert_eq!(
            redacted,
            "could not reach http://***@host:8080/pypi/x/json?a=1&token=***: \
             error for https://hub.example/r?X-Amz-Signature=***&b=2#f, then ftp://plain/x"
        );
        assert_eq!(redact_urls("no url here"), "no url here");
    }
}
