//! Links and images: the `link` and `image` rules' view of a message.

use super::check::locate;

/// URLs written in text, with positions.
pub(super) fn urls(text: &str) -> Vec<(usize, usize, String)> {
    let mut out = Vec::new();
    for (l, line) in text.lines().enumerate() {
        let mut column = 0;
        for word in line.split(' ') {
            let trimmed = word.trim_start_matches(['(', '<', '[', '"', '\'']);
            let lower = trimmed.to_ascii_lowercase();
            if lower.starts_with("http://")
                || lower.starts_with("https://")
                || lower.starts_with("www.")
            {
                let url =
                    trimmed.trim_end_matches([')', '>', ']', '"', '\'', '.', ',', ';', '!', '?']);
                let offset = word.len() - trimmed.len();
                out.push((l + 1, column + offset + 1, url.to_string()));
            }
            column += word.chars().count() + 1;
        }
    }
    out
}

/// The lower-cased host of a URL, without a leading `www.`.
pub(super) fn domain(url: &str) -> Option<String> {
    let rest = url
        .split_once("://")
        .map(|(_, r)| r)
        .or_else(|| url.strip_prefix("//"))
        .unwrap_or(url);
    let host = rest.split(['/', '?', '#']).next()?;
    let host = host.rsplit('@').next()?.split(':').next()?;
    let host = host.to_ascii_lowercase();
    // www.example.com and example.com are the same site.
    let host = host.strip_prefix("www.").unwrap_or(&host).to_string();
    (!host.is_empty()).then_some(host)
}

pub(super) fn is_allowed(host: &str, allowed: &[String]) -> bool {
    allowed
        .iter()
        .any(|a| host == a || host.ends_with(&format!(".{a}")))
}

/// Values of an attribute in HTML source, entity-decoded enough for URLs.
pub(super) fn attribute_values(html: &str, attribute: &str) -> Vec<(usize, usize, String)> {
    let lower = html.to_ascii_lowercase();
    let needle = format!("{attribute}=");
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = lower[from..].find(&needle).map(|i| i + from) {
        let value_start = i + needle.len();
        let rest = &html[value_start..];
        let (value, _) = match rest.chars().next() {
            Some(q @ ('"' | '\'')) => {
                let inner = &rest[1..];
                let end = inner.find(q).unwrap_or(inner.len());
                (&inner[..end], end + 2)
            }
            _ => {
                let end = rest.find([' ', '>']).unwrap_or(rest.len());
                (&rest[..end], end)
            }
        };
        let decoded = value
            .replace("&#x2F;", "/")
            .replace("&#47;", "/")
            .replace("&amp;", "&")
            .replace("&#x3A;", ":");
        let (line, column) = locate(html, i);
        out.push((line, column, decoded));
        from = value_start;
    }
    out
}

/// Opening tags named `name`, with positions.
pub(super) fn tags(html: &str, name: &str) -> Vec<(usize, usize, String)> {
    let lower = html.to_ascii_lowercase();
    let needle = format!("<{name}");
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = lower[from..].find(&needle).map(|i| i + from) {
        let after = lower[i + needle.len()..].chars().next();
        if after.is_none_or(|c| c.is_whitespace() || c == '>' || c == '/') {
            let end = html[i..].find('>').map(|e| i + e + 1).unwrap_or(html.len());
            let (line, column) = locate(html, i);
            out.push((line, column, html[i..end].to_string()));
        }
        from = i + needle.len();
    }
    out
}
