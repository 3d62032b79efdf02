//! Secrets out of everything followupd prints, and one line an event.
//!
//! Errors quote what they were given: a database URL with its password
//! (whatever its scheme, misspelt ones included), a `password=` query or
//! connection-string parameter. [`text`] hides those in any message, and
//! [`Redacting`] applies it to every log event on its way to stderr, joining
//! an event's lines into one (the journal keeps one event a line). TOML
//! errors are made without the quoted source line where they start
//! (`config/`), so a value never reaches here at all.

use std::io::Write;

/// Parameter names whose values are secrets, in URL queries and in
/// `key=value` connection strings.
/// (Not `token`: the send log's claim tokens are numbers worth seeing.)
const SECRET_KEYS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "sslpassword",
    "secret",
    "api_key",
    "apikey",
];

const HIDDEN: &str = "***";

/// `url` with the password of its user part and the values of secret
/// query parameters replaced by `***`.
pub fn url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return parameters(url);
    };
    let after = scheme_end + 3;
    let authority_end = url[after..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| after + i);
    let authority = &url[after..authority_end];
    let authority = match authority.rfind('@') {
        Some(at) => match authority[..at].split_once(':') {
            Some((user, _)) => format!("{user}:{HIDDEN}{}", &authority[at..]),
            None => authority.to_string(),
        },
        None => authority.to_string(),
    };
    format!(
        "{}{authority}{}",
        &url[..after],
        parameters(&url[authority_end..])
    )
}

/// `key=value` pairs (separated by `&`, `;` or spaces) with the values of
/// secret keys hidden.
fn parameters(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(eq) = rest.find('=') {
        let head = rest[..eq].trim_end();
        let key_start = head
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(0, |i| i + 1);
        let key = &head[key_start..];
        out.push_str(&rest[..=eq]);
        rest = &rest[eq + 1..];
        if SECRET_KEYS.iter().any(|k| key.eq_ignore_ascii_case(k)) {
            let value = rest.trim_start();
            let skipped = rest.len() - value.len();
            let end = value
                .find(|c: char| c.is_whitespace() || "&;'\"`,)]}".contains(c))
                .unwrap_or(value.len());
            if end > 0 {
                out.push_str(&rest[..skipped]);
                out.push_str(HIDDEN);
                rest = &value[end..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// `text` with every URL in it passed through [`url`], secret `key=value`
/// parameters hidden, and its lines joined into one.
pub fn text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(found) = rest.find("://") {
        let start = rest[..found]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || "+.-".contains(c)))
            .map_or(0, |i| i + c_len(rest, i));
        let end = rest[found..]
            .find(|c: char| c.is_whitespace() || "'\"`<>".contains(c))
            .map_or(rest.len(), |i| found + i);
        out.push_str(&parameters(&rest[..start]));
        out.push_str(&url(&rest[start..end]));
        rest = &rest[end..];
    }
    out.push_str(&parameters(rest));
    one_line(&out)
}

/// The length of the character at byte `i` of `s`.
fn c_len(s: &str, i: usize) -> usize {
    s[i..].chars().next().map_or(1, char::len_utf8)
}

/// `text` on one line: line breaks (and the indentation after them) become
/// ` | `.
pub fn one_line(text: &str) -> String {
    let trimmed = text.trim_end_matches(['\n', '\r']);
    if !trimmed.contains(['\n', '\r']) {
        return trimmed.to_string();
    }
    trimmed
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" | ")
}

/// A log writer that passes each event through [`text`]: no secret, one
/// line. tracing-subscriber formats an event whole and writes it at once.
pub struct Redacting<W>(pub W);

impl<W: Write> Write for Redacting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let event = String::from_utf8_lossy(buf);
        let mut line = text(&event);
        if event.ends_with('\n') {
            line.push('\n');
        }
        self.0.write_all(line.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_of_any_scheme_and_in_parameters_are_hidden() {
        assert_eq!(
            url("postgres://u:PgS3cret@db.internal/followupd"),
            "postgres://u:***@db.internal/followupd"
        );
        assert_eq!(url("postgress://u:PgS3cret@db/x"), "postgress://u:***@db/x");
        assert_eq!(
            url("postgres://host/db?user=postgres&password=PgS3cret&sslmode=require"),
            "postgres://host/db?user=postgres&password=***&sslmode=require"
        );
        assert_eq!(
            url("sqlite://state/x.db?mode=rwc"),
            "sqlite://state/x.db?mode=rwc"
        );
        let said = text("error: 'postgress://u:PgS3cret@db/x' must start with sqlite://\n  host=db password = Pw2 port=5");
        assert!(
            !said.contains("PgS3cret") && !said.contains("Pw2"),
            "{said}"
        );
        assert!(!said.contains('\n'), "{said}");
        assert!(said.contains("u:***@db/x'"), "{said}");
    }
}
