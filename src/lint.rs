//! The compliance lint: finds words a seller must never write to a buyer.
//!
//! Marketplaces penalise messages that read like review manipulation, so every
//! rendered message passes through here before it is handed to a transport,
//! and a hit blocks it. This module is pure text processing: it finds hits
//! with their line and column, and works out whether a word came from a
//! template's own text or from order data. Rendering and storage live
//! elsewhere.

use std::fmt;

/// The default forbidden list: review, update, change and modify in every
/// inflection. A trailing `*` matches any word that starts with the stem
/// (`review*` matches reviews, reviewer, reviewing), so `preview` and
/// `exchange` stay clean; `change*` rather than `chang*` spares the surname
/// Chang.
pub const DEFAULT_FORBIDDEN: &[&str] = &[
    "review*", "update*", "updating", "change*", "changing", "modif*",
];

#[derive(Debug, Clone, PartialEq)]
struct Entry {
    pattern: String,
    stem: String,
    prefix: bool,
}

/// The seller's forbidden list, ready for matching.
#[derive(Debug, Clone, PartialEq)]
pub struct Forbidden {
    entries: Vec<Entry>,
}

/// One forbidden word found in a piece of text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// The word as written.
    pub word: String,
    /// The forbidden-list entry it matched.
    pub pattern: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

impl Forbidden {
    /// Builds the matcher. Each entry is a whole word, or a stem ending in `*`.
    pub fn new(list: &[String]) -> Result<Self, String> {
        let mut entries = Vec::with_capacity(list.len());
        for pattern in list {
            let (stem, prefix) = match pattern.strip_suffix('*') {
                Some(stem) => (stem, true),
                None => (pattern.as_str(), false),
            };
            if stem.is_empty() || !stem.chars().all(char::is_alphanumeric) {
                return Err(format!(
                    "'{pattern}' must be a word, or a word stem followed by *"
                ));
            }
            entries.push(Entry {
                pattern: pattern.clone(),
                stem: stem.to_lowercase(),
                prefix,
            });
        }
        Ok(Self { entries })
    }

    /// The entry a single word matches, if any (case-insensitive).
    pub fn matching(&self, word: &str) -> Option<&str> {
        let lower = word.to_lowercase();
        self.entries
            .iter()
            .find(|e| {
                if e.prefix {
                    lower.starts_with(&e.stem)
                } else {
                    lower == e.stem
                }
            })
            .map(|e| e.pattern.as_str())
    }

    /// Every forbidden word in `text`. Web addresses are not words a reader
    /// sees as prose (`…/review-your-purchase`), so they are passed over.
    pub fn scan(&self, text: &str) -> Vec<Hit> {
        let mut hits = Vec::new();
        for (line_index, line) in text.lines().enumerate() {
            self.scan_line(line, line_index + 1, &mut hits);
        }
        hits
    }

    fn scan_line(&self, line: &str, line_number: usize, hits: &mut Vec<Hit>) {
        let mut word: Option<(usize, usize)> = None; // (byte, column) of its start
        let mut in_url = false;
        let mut column = 0;
        for (byte, c) in line
            .char_indices()
            .chain(std::iter::once((line.len(), ' ')))
        {
            column += 1;
            if c.is_whitespace() {
                in_url = false;
            }
            if c.is_alphanumeric() && !in_url {
                if word.is_none() {
                    if is_url_start(&line[byte..]) {
                        in_url = true;
                        continue;
                    }
                    word = Some((byte, column));
                }
                continue;
            }
            if let Some((start, start_column)) = word.take() {
                let written = &line[start..byte];
                if let Some(pattern) = self.matching(written) {
                    hits.push(Hit {
                        word: written.to_string(),
                        pattern: pattern.to_string(),
                        line: line_number,
                        column: start_column,
                    });
                }
            }
        }
    }

    /// Forbidden words in a template's own text. Tera tags (`{{ … }}`,
    /// `{% … %}`, `{# … #}`) are blanked out first so that variable names
    /// such as `order.review_url` are not mistaken for prose; columns stay
    /// those of the file.
    pub fn scan_template_source(&self, source: &str) -> Vec<Hit> {
        self.scan(&blank_tera_tags(source))
    }
}

fn is_url_start(s: &str) -> bool {
    let lower: String = s.chars().take(8).flat_map(char::to_lowercase).collect();
    lower.starts_with("http://") || lower.starts_with("https://") || lower.starts_with("www.")
}

/// Replaces every character inside a Tera tag with a space, keeping line
/// breaks, so positions in the result are positions in the template file.
fn blank_tera_tags(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut closing: Option<&str> = None;
    let mut rest = source;
    while !rest.is_empty() {
        match closing {
            None => {
                let opener = ["{{", "{%", "{#"]
                    .iter()
                    .filter_map(|o| rest.find(o).map(|i| (i, *o)))
                    .min();
                match opener {
                    Some((i, o)) => {
                        out.push_str(&rest[..i]);
                        out.push_str("  ");
                        rest = &rest[i + 2..];
                        closing = Some(match o {
                            "{{" => "}}",
                            "{%" => "%}",
                            _ => "#}",
                        });
                    }
                    None => {
                        out.push_str(rest);
                        rest = "";
                    }
                }
            }
            Some(close) => {
                let end = rest.find(close).map(|i| i + 2).unwrap_or(rest.len());
                for c in rest[..end].chars() {
                    out.push(if c == '\n' { '\n' } else { ' ' });
                }
                rest = &rest[end..];
                closing = None;
            }
        }
    }
    out
}

/// The text a reader sees in an HTML body: tags dropped, entities decoded,
/// link targets left out.
pub fn visible_text(html: &str) -> String {
    html2text::config::plain_no_decorate()
        .string_from_read(html.as_bytes(), 10_000)
        .unwrap_or_else(|_| html.to_string())
}

/// Which part of a message a hit is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Subject,
    Text,
    Html,
}

impl Part {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Subject => "subject",
            Self::Text => "text body",
            Self::Html => "HTML body",
        }
    }
}

/// Where a forbidden word came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The template's own text, at this file position.
    Template {
        file: String,
        line: usize,
        column: usize,
    },
    /// An order field that was inserted into the message.
    OrderField(String),
    /// Formed in rendering (say, by joining a template string and data).
    Rendered,
}

/// A hit in a rendered message, with its origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub part: Part,
    pub hit: Hit,
    pub origin: Origin,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Hit {
            word,
            pattern,
            line,
            column,
        } = &self.hit;
        match &self.origin {
            Origin::Template { file, line, column } => write!(
                f,
                "{file}:{line}:{column}: forbidden word '{word}' (matches '{pattern}') in the template text"
            ),
            Origin::OrderField(field) => write!(
                f,
                "{}:{line}:{column}: forbidden word '{word}' (matches '{pattern}') from order data: {field}",
                self.part.as_str()
            ),
            Origin::Rendered => write!(
                f,
                "{}:{line}:{column}: forbidden word '{word}' (matches '{pattern}') in the rendered text",
                self.part.as_str()
            ),
        }
    }
}

/// A template's own forbidden words, found once when it is loaded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TemplateHits {
    pub file: String,
    pub hits: Vec<Hit>,
}

/// Says where a hit in a rendered part came from: the same word in the
/// template's own text wins, then an order field that contains it.
pub fn attribute(
    forbidden: &Forbidden,
    hit: &Hit,
    template: &TemplateHits,
    fields: &[(String, &str)],
) -> Origin {
    let word = hit.word.to_lowercase();
    if let Some(t) = template.hits.iter().find(|t| t.word.to_lowercase() == word) {
        return Origin::Template {
            file: template.file.clone(),
            line: t.line,
            column: t.column,
        };
    }
    for (name, value) in fields {
        if forbidden
            .scan(value)
            .iter()
            .any(|h| h.word.to_lowercase() == word)
        {
            return Origin::OrderField(name.clone());
        }
    }
    Origin::Rendered
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Forbidden {
        Forbidden::new(
            &DEFAULT_FORBIDDEN
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        )
        .unwrap()
    }

    #[test]
    fn whole_words_and_inflections_case_insensitively() {
        let f = defaults();
        for word in [
            "review",
            "Reviews",
            "REVIEWED",
            "reviewing",
            "reviewer",
            "update",
            "updated",
            "updating",
            "changes",
            "Changed",
            "changing",
            "modify",
            "modifies",
            "modified",
            "modifying",
            "modification",
        ] {
            assert_eq!(f.scan(word).len(), 1, "{word} should be caught");
        }
        for word in [
            "exchange",
            "preview",
            "interchangeable",
            "Chang",
            "unchanged",
        ] {
            assert!(f.scan(word).is_empty(), "{word} is not forbidden");
        }
    }

    #[test]
    fn positions_are_line_and_character_column() {
        let hits = defaults().scan("Hello Zoë,\nthé review");
        assert_eq!(hits.len(), 1);
        assert_eq!((hits[0].line, hits[0].column), (2, 5));
    }

    #[test]
    fn urls_are_not_prose() {
        let f = defaults();
        assert!(f
            .scan("Tell us here: https://example.com/review/write?x=1 thanks")
            .is_empty());
        assert_eq!(f.scan("www.x.com review").len(), 1);
    }

    #[test]
    fn template_tags_are_not_prose() {
        let f = defaults();
        let src = "Link: {{ order.review_url }}\n{# a review note #}\nPlease review {% if x %}";
        let hits = f.scan_template_source(src);
        assert_eq!(hits.len(), 1);
        assert_eq!((hits[0].line, hits[0].column), (3, 8));
    }

    #[test]
    fn html_visible_text_drops_link_targets() {
        let text = visible_text(r#"<p>Hi &amp; <a href="https://x.com/review">tell us</a></p>"#);
        assert!(text.contains("Hi & "));
        assert!(!text.contains("x.com"));
    }
}
