//! The compliance lint: finds words a seller must never write to a buyer.
//!
//! Marketplaces penalise messages that read like review manipulation, so every
//! rendered message passes through here before it is handed to a transport,
//! and a hit blocks it. This module is pure text processing: it finds hits
//! with their line and column, and works out whether a word came from a
//! template's own text or from order data. Rendering and storage live
//! elsewhere.
//!
//! # Lists
//!
//! A list entry is a word (`avis`), a phrase (`mettre à jour`), or either
//! with a trailing `*` matching any ending (`review*`: reviews, reviewer; not
//! preview). A leading `*` also allows any beginning, for languages that glue
//! words together (`*bewertung*` catches Produktbewertungen). An entry
//! starting with `!` is an allowed phrase: a hit lying inside it is not a hit
//! (`!avis de passage`, the carrier's delivery notice). Terms written in a
//! script without spaces between words (Japanese, Chinese, Thai) match
//! wherever they occur, not only as whole words.
//!
//! The default list (English, [`DEFAULT_FORBIDDEN`]) always applies; a
//! message in a known locale is also checked against that locale's list
//! ([`default_list`] has the shipped ones: en, de, fr, es, it, ja).
//!
//! # Normalisation
//!
//! Text and entries pass through the same normalisation before matching, so
//! spelling games do not hide a word:
//!
//! 1. default-ignorable characters (zero-width spaces and joiners, soft
//!    hyphens, bidi controls, variation selectors) are dropped;
//! 2. Unicode NFKC (full-width and mathematical letters, ligatures, half-width
//!    katakana), leftover combining marks dropped;
//! 3. case folding; hiragana folded to katakana; look-alike letters (Cyrillic,
//!    Greek, small capitals, dotless i, ø, ł…) mapped to the Latin letter;
//!    typographic apostrophes to `'`; every run of white space to one space;
//! 4. runs of single letters or digits separated by any run of spaces and
//!    punctuation up to eight characters long, with no line break, are
//!    joined (`r e v i e w`, `r.e.v.i.e.w`, `u -- p -- d`); a
//!    piece of two or more letters is never joined (`the re view` stays).
//!    Kana and Han are single letters, joined across spaces and separators
//!    such as `・` but never across sentence punctuation (`、`, `。`);
//! 5. matching is on a skeleton in which digits stand for letters (0 o,
//!    1 i/l, 3 e, 4 a, 5 s, 7 t), `i` and `l` are one letter and diacritics
//!    are dropped; each candidate is then checked letter by letter: a letter
//!    must be the entry's letter, or that letter with diacritics added
//!    (`rëview`), or a digit standing for it. A diacritic is never dropped
//!    (`andern`, "other", is not `ändern`), a match needs at least as
//!    many letters as digits, and a digit stands for a letter only alone:
//!    beside another digit it is part of a number (`AV15` is not `avis`).
//!
//! Web addresses are not prose and are skipped, joined letters included.
//! Every position reported is one in the original text, and the word is
//! reported as written there.

mod finding;
mod html;
mod lists;
mod matcher;
mod normalize;

pub use finding::{attribute, Attributor, Finding, Hit, Origin, Part, TemplateHits};
pub use html::{visible_text, visible_text_with_sources};
pub use lists::{default_list, DEFAULT_FORBIDDEN, SHIPPED_LOCALES};

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use finding::blank_tera_tags;
use lists::{canonical_locale, to_strings};
use matcher::Matcher;

/// Why a forbidden list could not be compiled.
#[derive(Debug, thiserror::Error)]
pub enum LintError {
    #[error(
        "'{pattern}' must be a word, or a word stem followed by * \
         (or a phrase; * may also start it, ! makes it an allowed phrase)"
    )]
    InvalidEntry { pattern: String },
    #[error("'{pattern}' has no letters after normalisation")]
    NoLetters { pattern: String },
    #[error("locale '{tag}': not a locale tag such as de or de-AT")]
    InvalidLocaleTag { tag: String },
    /// An error in one locale's list.
    #[error("locale '{locale}': {source}")]
    InLocale {
        locale: String,
        #[source]
        source: Box<LintError>,
    },
    #[error("cannot build the matcher: {0}")]
    Automaton(#[from] aho_corasick::BuildError),
}

/// The seller's forbidden lists, ready for matching: the default list, and
/// one list per locale.
#[derive(Clone)]
pub struct Forbidden {
    default_list: Vec<String>,
    locale_lists: BTreeMap<String, Vec<String>>,
    default: Arc<Matcher>,
    /// Per locale: the default list and the locale's, in one automaton.
    by_locale: BTreeMap<String, Arc<Matcher>>,
}

impl fmt::Debug for Forbidden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Forbidden")
            .field("default_list", &self.default_list)
            .field("locale_lists", &self.locale_lists)
            .finish()
    }
}

impl PartialEq for Forbidden {
    fn eq(&self, other: &Self) -> bool {
        self.default_list == other.default_list && self.locale_lists == other.locale_lists
    }
}

/// One forbidden word found in a piece of text.
impl Forbidden {
    /// Builds the matcher for one list, the default one: what [`scan`]
    /// checks, and what every locale's check includes. No locale lists.
    ///
    /// [`scan`]: Forbidden::scan
    pub fn new(list: &[String]) -> Result<Self, LintError> {
        let default = Matcher::build(&[(None, list)])?;
        Ok(Self {
            default_list: list.to_vec(),
            locale_lists: BTreeMap::new(),
            default: Arc::new(default),
            by_locale: BTreeMap::new(),
        })
    }

    /// Builds the default list and the per-locale lists: the shipped lists
    /// for de, fr, es, it and ja (see [`default_list`]), each replaced by the
    /// entry of `per_locale` with the same tag, plus `per_locale`'s other
    /// tags. To add to a shipped list, start from [`default_list`]; an empty
    /// list switches a shipped one off. Tags are case-insensitive, `_` or `-`
    /// (`de_AT` = `de-at`). Errors name the locale: `locale 'de': …`.
    pub fn with_locales(
        default: &[String],
        per_locale: &BTreeMap<String, Vec<String>>,
    ) -> Result<Self, LintError> {
        let mut forbidden = Self::new(default)?;
        let mut lists: BTreeMap<String, Vec<String>> = SHIPPED_LOCALES
            .iter()
            .filter(|l| **l != "en")
            .filter_map(|l| default_list(l).map(|list| (l.to_string(), to_strings(list))))
            .collect();
        for (tag, list) in per_locale {
            let key = canonical_locale(tag);
            let valid = !key.is_empty()
                && key.split('-').all(|part| {
                    !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric())
                });
            if !valid {
                return Err(LintError::InvalidLocaleTag { tag: tag.clone() });
            }
            lists.insert(key, list.clone());
        }
        for (key, list) in &lists {
            let matcher =
                Matcher::build(&[(None, default), (Some(key.as_str()), list)]).map_err(|e| {
                    LintError::InLocale {
                        locale: key.clone(),
                        source: Box::new(e),
                    }
                })?;
            forbidden.by_locale.insert(key.clone(), Arc::new(matcher));
        }
        forbidden.locale_lists = lists;
        Ok(forbidden)
    }

    /// The default list, as given.
    pub fn default_entries(&self) -> &[String] {
        &self.default_list
    }

    /// The locales with a list of their own, and their lists.
    pub fn locale_lists(&self) -> &BTreeMap<String, Vec<String>> {
        &self.locale_lists
    }

    /// The locale list that applies to a message in `locale`: the exact tag
    /// (`de-at`), then its language (`de`); `None` when only the default
    /// list applies.
    pub fn resolve_locale(&self, locale: Option<&str>) -> Option<&str> {
        self.resolve(locale).0
    }

    fn resolve(&self, locale: Option<&str>) -> (Option<&str>, &Matcher) {
        if let Some(locale) = locale.map(canonical_locale) {
            let language = locale.split_once('-').map(|(l, _)| l);
            for candidate in std::iter::once(locale.as_str()).chain(language) {
                if let Some((key, matcher)) = self.by_locale.get_key_value(candidate) {
                    return (Some(key.as_str()), matcher);
                }
            }
        }
        (None, &self.default)
    }

    /// The default-list entry a single word matches, if any.
    pub fn matching(&self, word: &str) -> Option<&str> {
        let hit = self
            .scan(word)
            .into_iter()
            .find(|h| h.column == 1 && h.line == 1 && h.word.len() == word.len())?;
        self.default_list
            .iter()
            .find(|p| **p == hit.pattern)
            .map(String::as_str)
    }

    /// Every forbidden word of the default list in `text`. Web addresses are
    /// not words a reader sees as prose (`…/review-your-purchase`), so they
    /// are passed over.
    pub fn scan(&self, text: &str) -> Vec<Hit> {
        self.default.scan(text)
    }

    /// Every forbidden word in `text`, a message in `locale`: the default
    /// list's and the locale's (`de-AT`, else `de`; see
    /// [`Forbidden::resolve_locale`]).
    pub fn scan_locale(&self, text: &str, locale: Option<&str>) -> Vec<Hit> {
        self.resolve(locale).1.scan(text)
    }

    /// Forbidden words in a template's own text. Tera tags (`{{ … }}`,
    /// `{% … %}`, `{# … #}`) are blanked out first so that variable names
    /// such as `order.review_url` are not mistaken for prose; columns stay
    /// those of the file.
    pub fn scan_template_source(&self, source: &str) -> Vec<Hit> {
        self.scan(&blank_tera_tags(source))
    }

    /// [`Forbidden::scan_template_source`] for the templates of a locale.
    pub fn scan_template_source_locale(&self, source: &str, locale: Option<&str>) -> Vec<Hit> {
        self.scan_locale(&blank_tera_tags(source), locale)
    }
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
}
