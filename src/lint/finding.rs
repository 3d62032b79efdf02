//! Findings: a hit in a rendered message, which part it is in, and where it
//! came from (the template's own text, an order field, or the rendering).

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::fmt;

use super::normalize::{normalize, skeleton_of};
use super::Forbidden;

/// One forbidden word found in a piece of text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// The word as written (for joined letters, with what separates them).
    pub word: String,
    /// The forbidden-list entry it matched.
    pub pattern: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// The locale whose list holds the entry; `None` for the default list.
    pub locale: Option<String>,
}

/// The key two hits are compared by: the word's normalised letters.
fn word_key(word: &str) -> String {
    normalize(word, false)
        .chars
        .iter()
        .filter(|n| n.kind.is_word())
        .map(skeleton_of)
        .collect()
}

/// Replaces every character inside a Tera tag with a space, keeping line
/// breaks, so positions in the result are positions in the template file.
pub(super) fn blank_tera_tags(source: &str) -> String {
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
            ..
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
/// template's own text wins, then an order field that contains it. Words are
/// compared normalised (`Review` = `r e v i e w`); order fields are checked
/// with the list the hit came from. For many hits in one part, an
/// [`Attributor`] scans each field once instead of once a hit.
pub fn attribute(
    forbidden: &Forbidden,
    hit: &Hit,
    template: &TemplateHits,
    fields: &[(String, &str)],
) -> Origin {
    Attributor::new(forbidden, template, fields).origin(hit)
}

/// [`attribute`] for every hit of one rendered part: the template's words
/// and each order field's words are normalised once, so tracing all hits
/// costs time linear in the part, the template and the fields.
pub struct Attributor<'a> {
    forbidden: &'a Forbidden,
    template: &'a TemplateHits,
    fields: &'a [(String, &'a str)],
    /// Each template word's key, with its first hit.
    template_keys: HashMap<String, usize>,
    /// Per locale the hit came from: each field's word keys, made on first
    /// use.
    field_keys: RefCell<HashMap<Option<String>, Vec<HashSet<String>>>>,
}

impl<'a> Attributor<'a> {
    pub fn new(
        forbidden: &'a Forbidden,
        template: &'a TemplateHits,
        fields: &'a [(String, &'a str)],
    ) -> Self {
        let mut template_keys = HashMap::new();
        for (i, t) in template.hits.iter().enumerate() {
            template_keys.entry(word_key(&t.word)).or_insert(i);
        }
        Self {
            forbidden,
            template,
            fields,
            template_keys,
            field_keys: RefCell::new(HashMap::new()),
        }
    }

    /// Where `hit` came from.
    pub fn origin(&self, hit: &Hit) -> Origin {
        let word = word_key(&hit.word);
        if let Some(&i) = self.template_keys.get(&word) {
            let t = &self.template.hits[i];
            return Origin::Template {
                file: self.template.file.clone(),
                line: t.line,
                column: t.column,
            };
        }
        let mut cache = self.field_keys.borrow_mut();
        let keys = cache.entry(hit.locale.clone()).or_insert_with(|| {
            self.fields
                .iter()
                .map(|(_, value)| {
                    self.forbidden
                        .scan_locale(value, hit.locale.as_deref())
                        .iter()
                        .map(|h| word_key(&h.word))
                        .collect()
                })
                .collect()
        });
        match keys.iter().position(|k| k.contains(&word)) {
            Some(i) => Origin::OrderField(self.fields[i].0.clone()),
            None => Origin::Rendered,
        }
    }
}
