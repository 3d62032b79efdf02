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
//! 4. runs of single letters or digits separated by a space or up to three
//!    punctuation characters are joined (`r e v i e w`, `r.e.v.i.e.w`); a
//!    piece of two or more letters is never joined (`the re view` stays).
//!    Kana and Han are single letters, joined across spaces and separators
//!    such as `・` but never across sentence punctuation (`、`, `。`);
//! 5. matching is on a skeleton in which digits stand for letters (0 o,
//!    1 i/l, 3 e, 4 a, 5 s, 7 t), `i` and `l` are one letter and diacritics
//!    are dropped; each candidate is then checked letter by letter: a letter
//!    must be the entry's letter, or that letter with diacritics added
//!    (`rëview`), or a digit standing for it. A diacritic is never dropped
//!    (`andern`, "other", is not `ändern`), and a match needs at least as
//!    many letters as digits.
//!
//! Web addresses are not prose and are skipped, joined letters included.
//! Every position reported is one in the original text, and the word is
//! reported as written there.

mod html;

pub use html::{visible_text, visible_text_with_sources};

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use unicode_normalization::char::{
    canonical_combining_class, decompose_canonical, is_combining_mark,
};
use unicode_normalization::{is_nfkc_quick, IsNormalized, UnicodeNormalization};

/// The default forbidden list: review, update, change and modify in every
/// inflection. A trailing `*` matches any word that starts with the stem
/// (`review*` matches reviews, reviewer, reviewing), so `preview` and
/// `exchange` stay clean; `change*` rather than `chang*` spares the surname
/// Chang.
pub const DEFAULT_FORBIDDEN: &[&str] = &[
    "review*", "update*", "updating", "change*", "changing", "modif*",
];

/// German. Compounds carry the noun anywhere (Produktbewertung,
/// Adressänderung), hence the infix entries; `änder*` must keep its umlaut
/// (`andern` means "other"), but the spelling without umlauts (`aendern`) and
/// the dropped umlaut in words that do not otherwise exist (`Anderung`,
/// `geandert`) are listed. `Wanderung` and `Länder` stay clean.
const GERMAN: &[&str] = &[
    "*bewertung*",
    "bewert*",
    "*rezension*",
    "rezensier*",
    "aktualisier*",
    "*aktualisierung*",
    "änder*",
    "geänder*",
    "*änderung*",
    "veränder*",
    "abänder*",
    "aender*",
    "geaender*",
    "*aenderung*",
    "veraender*",
    "abaender*",
    "anderung*",
    "geandert*",
    "verander*",
    "modifizier*",
    "*modifikation*",
];

/// French. `avis` is a review, but also a notice (`avis de passage`, the
/// carrier's card) and an opinion (`à mon avis`): those phrases are allowed.
/// `avisé`, `aviser` are other words. `change*` and `modif*` of the default
/// list already catch changer, changement, modifier.
const FRENCH: &[&str] = &[
    "avis",
    "évaluation*",
    "évalu*",
    "evalu*",
    "modifi*",
    "changé*",
    "changement*",
    "actualis*",
    "mettre à jour",
    "mettre a jour",
    "mettez à jour",
    "mettez a jour",
    "mettons à jour",
    "mettons a jour",
    "mets à jour",
    "met à jour",
    "met a jour",
    "mettra à jour",
    "mettrons à jour",
    "mettrez à jour",
    "mis à jour",
    "mis a jour",
    "mise à jour",
    "mise a jour",
    "mises à jour",
    "mises a jour",
    "!avis de passage",
    "!avis d'expédition",
    "!avis d'expedition",
    "!avis d'envoi",
    "!avis de livraison",
    "!avis de réception",
    "!avis de reception",
    "!avis contraire",
    "!nouvel avis",
    "!à mon avis",
    "!a mon avis",
    "!à notre avis",
    "!a notre avis",
];

/// Spanish. `opinión` is the everyday word for an opinion and is not listed
/// (English `opinion` is not either); `cambio`/`cambios` are left out because
/// in shop Spanish they mostly mean an exchange ("cambios y devoluciones"),
/// which the English list spares too; the verb is listed in every form.
/// `valor`, `valores` (value) stay clean.
const SPANISH: &[&str] = &[
    "reseña*",
    "resena",
    "resenas",
    "resenar*",
    "valoraci*",
    "valorar*",
    "valore",
    "valoren",
    "valóre*",
    "valorenos",
    "valorelo",
    "valoró",
    "calificaci*",
    "calificar*",
    "califique*",
    "califíque*",
    "califíca*",
    "calificanos",
    "actualiz*",
    "actualic*",
    "cambia*",
    "cambie*",
    "cambié",
    "cambió",
    "cámbie*",
    "modific*",
];

/// Italian. As in Spanish, `cambio` (an exchange: "reso o cambio") is left
/// out, the verb is listed; `valuta` (currency) stays clean.
const ITALIAN: &[&str] = &[
    "recensi*",
    "valutazion*",
    "valutar*",
    "valuti",
    "valutate",
    "valutaci",
    "valutateci",
    "aggiorn*",
    "cambia*",
    "cambie*",
    "cambiò",
    "modific*",
];

/// Japanese: terms, matched wherever they occur. `プレビュー` (preview) is
/// allowed; hiragana spellings match the katakana ones.
const JAPANESE: &[&str] = &[
    "レビュー",
    "レヴュー",
    "評価",
    "口コミ",
    "クチコミ",
    "変更",
    "更新",
    "修正",
    "アップデート",
    "!プレビュー",
    "!プレヴュー",
];

/// The languages with a shipped list.
pub const SHIPPED_LOCALES: &[&str] = &["en", "de", "fr", "es", "it", "ja"];

/// The shipped list for a locale: the exact tag, then its language
/// (`de-AT` → `de`). `en` is [`DEFAULT_FORBIDDEN`].
pub fn default_list(locale: &str) -> Option<&'static [&'static str]> {
    fn shipped(language: &str) -> Option<&'static [&'static str]> {
        match language {
            "en" => Some(DEFAULT_FORBIDDEN),
            "de" => Some(GERMAN),
            "fr" => Some(FRENCH),
            "es" => Some(SPANISH),
            "it" => Some(ITALIAN),
            "ja" => Some(JAPANESE),
            _ => None,
        }
    }
    let locale = canonical_locale(locale);
    shipped(&locale).or_else(|| {
        locale
            .split_once('-')
            .and_then(|(language, _)| shipped(language))
    })
}

/// `de_AT`, ` DE-at ` → `de-at`.
fn canonical_locale(locale: &str) -> String {
    locale.trim().replace('_', "-").to_lowercase()
}

/// One list entry, parsed.
#[derive(Debug, Clone)]
struct Entry {
    /// As written in the list.
    pattern: String,
    /// The locale list it belongs to; `None` for the default list.
    locale: Option<String>,
    /// `!…`: an allowed phrase.
    allow: bool,
    /// `…*`: any ending.
    prefix: bool,
    /// `*…`, or a term in a script without spaces: any beginning.
    infix: bool,
    /// A term in a script without spaces: matched where it stands.
    unspaced: bool,
}

/// One literal the automaton looks for: an entry, or an entry's phrase with
/// its spaces taken out (for `m i s e à j o u r`).
#[derive(Debug, Clone)]
struct Variant {
    entry: usize,
    /// The entry's normalised characters, compared letter by letter.
    chars: Box<[char]>,
    /// Whether the entry itself has digits (then any digit count is fine).
    has_digits: bool,
}

/// One list (or the default list with a locale's), compiled.
#[derive(Debug)]
struct Matcher {
    entries: Vec<Entry>,
    variants: Vec<Variant>,
    automaton: Option<AhoCorasick>,
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

impl Forbidden {
    /// Builds the matcher for one list, the default one: what [`scan`]
    /// checks, and what every locale's check includes. No locale lists.
    ///
    /// [`scan`]: Forbidden::scan
    pub fn new(list: &[String]) -> Result<Self, String> {
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
    ) -> Result<Self, String> {
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
                return Err(format!(
                    "locale '{tag}': not a locale tag such as de or de-AT"
                ));
            }
            lists.insert(key, list.clone());
        }
        for (key, list) in &lists {
            let matcher = Matcher::build(&[(None, default), (Some(key.as_str()), list)])
                .map_err(|e| format!("locale '{key}': {e}"))?;
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

fn to_strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// An entry split into its flags and its text, checked.
fn parse_entry(pattern: &str) -> Result<(bool, bool, bool, &str), String> {
    let invalid = || {
        format!(
            "'{pattern}' must be a word, or a word stem followed by * \
             (or a phrase; * may also start it, ! makes it an allowed phrase)"
        )
    };
    let (allow, rest) = match pattern.strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, pattern),
    };
    let (infix, rest) = match rest.strip_prefix('*') {
        Some(rest) => (true, rest),
        None => (false, rest),
    };
    let (prefix, stem) = match rest.strip_suffix('*') {
        Some(stem) => (true, stem),
        None => (false, rest),
    };
    let word_ok = |word: &str| {
        let inner = |c: char| c.is_alphanumeric() || matches!(c, '\'' | '’' | '-' | '.');
        word.chars().all(inner)
            && word.chars().next().is_some_and(char::is_alphanumeric)
            && word.chars().next_back().is_some_and(char::is_alphanumeric)
    };
    if stem.trim() != stem || stem.is_empty() || !stem.split_whitespace().all(word_ok) {
        return Err(invalid());
    }
    Ok((allow, infix, prefix, stem))
}

impl Matcher {
    /// Compiles lists into one automaton; entries keep the lists' order,
    /// which decides the entry reported when several match the same word.
    fn build(lists: &[(Option<&str>, &[String])]) -> Result<Self, String> {
        let mut entries = Vec::new();
        let mut variants = Vec::new();
        let mut literals: Vec<String> = Vec::new();
        for (locale, list) in lists {
            for pattern in *list {
                let (allow, infix, prefix, stem) = parse_entry(pattern)?;
                let norm = normalize(stem, false).chars;
                if norm.is_empty() {
                    return Err(format!("'{pattern}' has no letters after normalisation"));
                }
                let unspaced = norm.iter().any(|n| n.kind == Kind::Unspaced);
                let entry = entries.len();
                entries.push(Entry {
                    pattern: pattern.clone(),
                    locale: locale.map(str::to_string),
                    allow,
                    prefix,
                    infix: infix || unspaced,
                    unspaced,
                });
                let has_digits = norm.iter().any(|n| n.c.is_ascii_digit());
                let mut add = |chars: Vec<char>, skeleton: String| {
                    variants.push(Variant {
                        entry,
                        chars: chars.into_boxed_slice(),
                        has_digits,
                    });
                    literals.push(skeleton);
                };
                add(
                    norm.iter().map(|n| n.c).collect(),
                    norm.iter().map(skeleton_of).collect(),
                );
                let phrase = norm.iter().any(|n| n.kind.is_space());
                if phrase && !allow {
                    let joined = || norm.iter().filter(|n| !n.kind.is_space());
                    add(
                        joined().map(|n| n.c).collect(),
                        joined().map(skeleton_of).collect(),
                    );
                }
            }
        }
        let automaton = if literals.is_empty() {
            None
        } else {
            Some(
                AhoCorasick::builder()
                    .match_kind(MatchKind::Standard)
                    .kind(Some(AhoCorasickKind::DFA))
                    .build(&literals)
                    .map_err(|e| format!("cannot build the matcher: {e}"))?,
            )
        };
        Ok(Self {
            entries,
            variants,
            automaton,
        })
    }

    fn scan(&self, text: &str) -> Vec<Hit> {
        let Some(automaton) = &self.automaton else {
            return Vec::new();
        };
        let normalized = normalize(text, true);
        let stream = Stream::build(&normalized);

        let mut candidates: Vec<Candidate> = Vec::new();
        for m in automaton.find_overlapping_iter(&stream.skeleton[..]) {
            let variant = &self.variants[m.pattern().as_usize()];
            let a = stream.position(m.start());
            let b = stream.position(m.end() - 1) + 1;
            if b - a != variant.chars.len() {
                continue;
            }
            let entry = &self.entries[variant.entry];
            let (mut letters, mut digits) = (0usize, 0usize);
            let letters_fit = variant.chars.iter().enumerate().all(|(k, &p)| {
                let t = stream.at(a + k);
                if t.c.is_ascii_digit() {
                    digits += 1;
                } else if t.c.is_alphabetic() {
                    letters += 1;
                }
                char_fits(t, p)
            });
            if !letters_fit || (!variant.has_digits && (letters == 0 || letters < digits)) {
                continue;
            }
            if !entry.infix && !stream.starts_word(a) {
                continue;
            }
            if !entry.prefix && !entry.unspaced && !stream.ends_word(b) {
                continue;
            }
            let (mut a, mut b) = (a, b);
            if !entry.unspaced {
                if entry.infix {
                    while a > 0 && stream.continues_word(a) {
                        a -= 1;
                    }
                }
                if entry.prefix {
                    while b < stream.len() && stream.continues_word(b) {
                        b += 1;
                    }
                }
            }
            candidates.push(Candidate {
                start: a,
                end: b,
                entry: variant.entry,
            });
        }
        if candidates.is_empty() {
            return Vec::new();
        }
        let allowed: Vec<(usize, usize)> = candidates
            .iter()
            .filter(|c| self.entries[c.entry].allow)
            .map(|c| (c.start, c.end))
            .collect();
        candidates.retain(|c| {
            !self.entries[c.entry].allow
                && !allowed.iter().any(|&(s, e)| s <= c.start && c.end <= e)
        });
        candidates.sort_by_key(|c| (c.start, c.entry));

        let mut hits = Vec::new();
        let mut covered_to = 0;
        let mut cursor = Cursor::default();
        for c in candidates {
            if c.start < covered_to {
                continue;
            }
            covered_to = c.end;
            let from = stream.at(c.start).start as usize;
            let to = stream.at(c.end - 1).end as usize;
            let (line, column) = cursor.advance(text, from);
            let entry = &self.entries[c.entry];
            hits.push(Hit {
                word: text[from..to].to_string(),
                pattern: entry.pattern.clone(),
                line,
                column,
                locale: entry.locale.clone(),
            });
        }
        hits
    }
}

/// A verified match, in stream positions, before allowed phrases and
/// overlaps are settled.
struct Candidate {
    start: usize,
    end: usize,
    entry: usize,
}

/// Turns byte offsets into line and column, walking forward only.
#[derive(Default)]
struct Cursor {
    byte: usize,
    line: usize,
    column: usize,
}

impl Cursor {
    fn advance(&mut self, text: &str, to: usize) -> (usize, usize) {
        if self.line == 0 {
            (self.line, self.column) = (1, 1);
        }
        for c in text[self.byte..to].chars() {
            if c == '\n' {
                self.line += 1;
                self.column = 1;
            } else {
                self.column += 1;
            }
        }
        self.byte = to;
        (self.line, self.column)
    }
}

/// A letter of the text against a letter of an entry (both normalised): the
/// same letter; the same base letter with the entry's diacritics among the
/// text's (`rëview`, never `andern` for `ändern`); a digit standing for it;
/// or `i` and `l`, which look alike.
fn char_fits(t: &NChar, p: char) -> bool {
    if t.c == p {
        return true;
    }
    let base_p = strip_diacritics(p);
    if t.c.is_ascii_digit() {
        return digit_stands_for(t.c, base_p);
    }
    let base_t = strip_diacritics(t.c);
    if base_t == base_p {
        let wanted = marks_of(p);
        return wanted & !(marks_of(t.c) | t.extra_marks) == 0;
    }
    matches!(base_t, 'i' | 'l') && matches!(p, 'i' | 'l')
}

/// The diacritics of a Latin, Greek or Cyrillic letter, as [`mark_bits`].
fn marks_of(c: char) -> u16 {
    if c.is_ascii() || !((c as u32) < 0x530 || ('\u{1E00}'..='\u{1EFF}').contains(&c)) {
        return 0;
    }
    let mut bits = 0;
    let mut first = true;
    decompose_canonical(c, |d| {
        if !first {
            bits |= mark_bits(d);
        }
        first = false;
    });
    bits
}

/// One bit per common combining mark; every other mark shares the top bit.
fn mark_bits(mark: char) -> u16 {
    match mark {
        '\u{300}' => 1,
        '\u{301}' => 1 << 1,
        '\u{302}' => 1 << 2,
        '\u{303}' => 1 << 3,
        '\u{304}' => 1 << 4,
        '\u{306}' => 1 << 5,
        '\u{307}' => 1 << 6,
        '\u{308}' => 1 << 7,
        '\u{30A}' => 1 << 8,
        '\u{30B}' => 1 << 9,
        '\u{30C}' => 1 << 10,
        '\u{323}' => 1 << 11,
        '\u{327}' => 1 << 12,
        '\u{328}' => 1 << 13,
        _ => 1 << 15,
    }
}

fn digit_stands_for(digit: char, letter: char) -> bool {
    matches!(
        (digit, letter),
        ('0', 'o') | ('1', 'i') | ('1', 'l') | ('3', 'e') | ('4', 'a') | ('5', 's') | ('7', 't')
    )
}

/// What a character is, for word boundaries and joining.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A letter or digit of a script written with spaces.
    Word,
    /// A letter of a script written without spaces (Han, kana, Thai…).
    Unspaced,
    Space,
    Newline,
    Punct,
    /// Part of a web address: never prose.
    Url,
}

impl Kind {
    fn is_word(self) -> bool {
        matches!(self, Self::Word | Self::Unspaced)
    }
    fn is_space(self) -> bool {
        matches!(self, Self::Space | Self::Newline)
    }
}

/// One normalised character and the original text it came from.
#[derive(Debug, Clone, Copy)]
struct NChar {
    /// Normalised: NFKC, folded, look-alikes mapped; diacritics kept.
    c: char,
    /// Byte range in the original text.
    start: u32,
    end: u32,
    kind: Kind,
    /// Combining marks that stayed on `c` without composing (see
    /// [`mark_bits`]).
    extra_marks: u16,
}

/// A text, normalised: its characters, and the skeleton the automaton runs
/// over (one skeleton character per normalised character, in UTF-8).
struct Normalized {
    chars: Vec<NChar>,
    skeleton: Vec<u8>,
    /// Whether every skeleton character is one byte.
    ascii: bool,
}

/// The skeleton character of a normalised one: digits as the letters they
/// stand for, `l` as `i`, diacritics dropped; a web address as NUL, and
/// punctuation beyond ASCII (which no entry holds) as one placeholder.
fn skeleton_of(n: &NChar) -> char {
    match n.kind {
        Kind::Url => '\0',
        Kind::Punct if !n.c.is_ascii() => '\u{1}',
        Kind::Punct | Kind::Space | Kind::Newline => n.c,
        Kind::Word | Kind::Unspaced => skeleton(n.c),
    }
}

/// Builds a [`Normalized`] in one pass over the text.
struct Normalizer<'t> {
    text: &'t str,
    out: Normalized,
    /// Marking web addresses (off for list entries).
    find_urls: bool,
    in_url: bool,
}

/// Normalises `text`: every normalised character knows the original bytes
/// it came from. With `find_urls`, web addresses are marked.
fn normalize(text: &str, find_urls: bool) -> Normalized {
    let mut n = Normalizer {
        text,
        out: Normalized {
            chars: Vec::with_capacity(text.len()),
            skeleton: Vec::with_capacity(text.len()),
            ascii: true,
        },
        find_urls,
        in_url: false,
    };
    let bytes = text.as_bytes();
    let mut segment: Vec<char> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b < 0x80 && bytes.get(i + 1).is_none_or(|&next| next < 0x80) {
            n.ascii(b, i as u32, i as u32 + 1);
            i += 1;
            continue;
        }
        let mut rest = text[i..].chars();
        let Some(c) = rest.next() else { break };
        let mut end = i + c.len_utf8();
        if rest.clone().next().is_none_or(|next| !attaches(next)) {
            if let Some(k) = kana_or_han(c) {
                n.unspaced(k, i as u32, end as u32);
            } else if b < 0x80 {
                n.ascii(b, i as u32, end as u32);
            } else if !is_ignorable(c) {
                n.lone(c, i as u32, end as u32);
            }
            i = end;
            continue;
        }
        segment.clear();
        segment.push(c);
        for next in rest {
            if !attaches(next) {
                break;
            }
            segment.push(next);
            end += next.len_utf8();
        }
        segment.retain(|&c| !is_ignorable(c));
        for d in segment.iter().copied().nfkc() {
            n.folded(d, i as u32, end as u32);
        }
        i = end;
    }
    n.out
}

/// What an ASCII byte is to the normaliser.
#[derive(Clone, Copy)]
enum AsciiClass {
    Letter,
    /// `h` or `w`: a letter that may start a web address.
    UrlStart,
    Space,
    Newline,
    Other,
}

/// Per ASCII byte: its normalised form, its skeleton and its class.
const ASCII_CLASSES: [(u8, u8, AsciiClass); 128] = {
    let mut table = [(0u8, 0u8, AsciiClass::Other); 128];
    let mut i = 0;
    while i < 128 {
        let b = i as u8;
        let c = match b {
            b'A'..=b'Z' => b + 32,
            b'`' => b'\'',
            _ => b,
        };
        let skel = match c {
            b'0' => b'o',
            b'1' | b'l' => b'i',
            b'3' => b'e',
            b'4' => b'a',
            b'5' => b's',
            b'7' => b't',
            _ => c,
        };
        let class = match c {
            b'h' | b'w' => AsciiClass::UrlStart,
            b'a'..=b'z' | b'0'..=b'9' => AsciiClass::Letter,
            b' ' | b'\t' => AsciiClass::Space,
            b'\n' | b'\r' | 0x0B | 0x0C => AsciiClass::Newline,
            _ => AsciiClass::Other,
        };
        table[i] = (c, skel, class);
        i += 1;
    }
    table
};

impl Normalizer<'_> {
    fn push(&mut self, c: char, start: u32, end: u32, kind: Kind) {
        let mut kind = kind;
        if self.in_url {
            if kind.is_space() || kind == Kind::Unspaced || ('\u{3000}'..='\u{303F}').contains(&c) {
                self.in_url = false;
            } else {
                kind = Kind::Url;
            }
        } else if self.find_urls
            && kind == Kind::Word
            && matches!(c, 'h' | 'w')
            && self.out.chars.last().is_none_or(|l| l.kind != Kind::Word)
            && is_url_start(&self.text[start as usize..])
        {
            self.in_url = true;
            kind = Kind::Url;
        }
        let n = NChar {
            c,
            start,
            end,
            kind,
            extra_marks: 0,
        };
        let skel = skeleton_of(&n);
        if skel.is_ascii() {
            self.out.skeleton.push(skel as u8);
        } else {
            self.out.ascii = false;
            let mut buf = [0; 4];
            self.out
                .skeleton
                .extend_from_slice(skel.encode_utf8(&mut buf).as_bytes());
        }
        self.out.chars.push(n);
    }

    #[inline(always)]
    fn ascii(&mut self, b: u8, start: u32, end: u32) {
        let (c, skel, class) = ASCII_CLASSES[b as usize];
        let kind = match class {
            AsciiClass::Letter if !self.in_url => Kind::Word,
            AsciiClass::Other if !self.in_url => Kind::Punct,
            AsciiClass::Space => return self.space(false, start, end),
            AsciiClass::Newline => return self.space(true, start, end),
            AsciiClass::Letter | AsciiClass::UrlStart => {
                return self.push(c as char, start, end, Kind::Word)
            }
            AsciiClass::Other => return self.push(c as char, start, end, Kind::Punct),
        };
        // The common case, inlined.
        self.out.skeleton.push(skel);
        self.out.chars.push(NChar {
            c: c as char,
            start,
            end,
            kind,
            extra_marks: 0,
        });
    }

    /// Kana or Han, folded (see [`kana_or_han`]): the common case of
    /// Japanese text, inlined.
    #[inline(always)]
    fn unspaced(&mut self, c: char, start: u32, end: u32) {
        self.in_url = false;
        let mut buf = [0; 4];
        self.out
            .skeleton
            .extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        self.out.ascii = false;
        self.out.chars.push(NChar {
            c,
            start,
            end,
            kind: Kind::Unspaced,
            extra_marks: 0,
        });
    }

    /// A non-ASCII character standing alone: kana and Han as they are,
    /// mapped look-alikes (some, like ´, NFKC would turn into a space and a
    /// mark), then NFKC.
    fn lone(&mut self, c: char, start: u32, end: u32) {
        if let Some(m) = look_alike(c) {
            self.letter(m, start, end);
        } else if is_nfkc_quick(std::iter::once(c)) == IsNormalized::Yes {
            self.folded(c, start, end);
        } else {
            for d in std::iter::once(c).nfkc() {
                self.folded(d, start, end);
            }
        }
    }

    /// One NFKC character: white space, a stray combining mark (dropped), or
    /// something to fold.
    fn folded(&mut self, d: char, start: u32, end: u32) {
        if d.is_ascii() {
            return self.ascii(d as u8, start, end);
        }
        if d.is_whitespace() {
            let newline = matches!(d, '\u{85}' | '\u{2028}' | '\u{2029}');
            return self.space(newline, start, end);
        }
        if is_combining_mark(d) {
            // Kept as a note on the letter: the entry's diacritics must be
            // among the text's.
            if let Some(last) = self.out.chars.last_mut().filter(|l| l.kind.is_word()) {
                last.extra_marks |= mark_bits(d);
            }
            return;
        }
        if is_ignorable(d) {
            return;
        }
        if d == 'ß' {
            self.letter('s', start, end);
            return self.letter('s', start, end);
        }
        if let Some(m) = look_alike(d) {
            return self.letter(m, start, end);
        }
        if d.is_lowercase() || !d.is_uppercase() {
            return self.letter(d, start, end);
        }
        for l in d.to_lowercase() {
            if !is_combining_mark(l) {
                self.letter(look_alike(l).unwrap_or(l), start, end);
            }
        }
    }

    /// A folded character: hiragana become katakana; classified.
    fn letter(&mut self, c: char, start: u32, end: u32) {
        if c.is_ascii() {
            return self.ascii(c as u8, start, end);
        }
        let c = match c {
            '\u{3041}'..='\u{3096}' => char::from_u32(c as u32 + 0x60).unwrap_or(c),
            _ => c,
        };
        let kind = if !c.is_alphanumeric() {
            Kind::Punct
        } else if is_unspaced(c) {
            Kind::Unspaced
        } else {
            Kind::Word
        };
        self.push(c, start, end, kind);
    }

    /// White space: a run is one space (a line break if it holds one).
    fn space(&mut self, newline: bool, start: u32, end: u32) {
        self.in_url = false;
        if let Some(last) = self.out.chars.last_mut() {
            if last.kind.is_space() {
                last.end = end;
                if newline {
                    last.kind = Kind::Newline;
                }
                return;
            }
        }
        self.out.skeleton.push(b' ');
        self.out.chars.push(NChar {
            c: ' ',
            start,
            end,
            kind: if newline { Kind::Newline } else { Kind::Space },
            extra_marks: 0,
        });
    }
}

/// A kana or Han letter, hiragana folded to katakana: these are their own
/// NFKC form, case and skeleton.
#[inline(always)]
fn kana_or_han(c: char) -> Option<char> {
    match c as u32 {
        0x3041..=0x3096 => char::from_u32(c as u32 + 0x60),
        0x30A1..=0x30FA | 0x30FC | 0x4E00..=0x9FFF => Some(c),
        _ => None,
    }
}

/// The normalised text with joined letters' separators taken out: what the
/// automaton runs over. Word boundaries are worked out only where a
/// candidate needs them.
struct Stream<'n> {
    norm: &'n [NChar],
    /// Skeleton characters, in UTF-8.
    skeleton: std::borrow::Cow<'n, [u8]>,
    /// Byte of `skeleton` → stream position; `None`: the same (all ASCII).
    position: Option<Vec<u32>>,
    /// Stream position → index into the normalised characters; `None`: the
    /// same (nothing joined).
    index: Option<Vec<u32>>,
}

impl<'n> Stream<'n> {
    fn build(normalized: &'n Normalized) -> Self {
        let norm = &normalized.chars[..];
        let (skeleton, index) = match joined_separators(norm) {
            None => (std::borrow::Cow::Borrowed(&normalized.skeleton[..]), None),
            Some(skip) => {
                let mut skeleton = Vec::with_capacity(normalized.skeleton.len());
                let mut index = Vec::with_capacity(norm.len());
                for (n, ch) in norm.iter().enumerate() {
                    if !skip[n] {
                        let mut buf = [0; 4];
                        skeleton
                            .extend_from_slice(skeleton_of(ch).encode_utf8(&mut buf).as_bytes());
                        index.push(n as u32);
                    }
                }
                (std::borrow::Cow::Owned(skeleton), Some(index))
            }
        };
        let position = (!normalized.ascii).then(|| {
            let mut k = 0u32;
            skeleton
                .iter()
                .enumerate()
                .map(|(i, &b)| {
                    if i > 0 && b & 0xC0 != 0x80 {
                        k += 1;
                    }
                    k
                })
                .collect()
        });
        Self {
            norm,
            skeleton,
            position,
            index,
        }
    }

    /// The stream position of a byte of the skeleton.
    fn position(&self, byte: usize) -> usize {
        self.position.as_ref().map_or(byte, |p| p[byte] as usize)
    }

    fn norm_index(&self, k: usize) -> usize {
        self.index.as_ref().map_or(k, |i| i[k] as usize)
    }

    fn len(&self) -> usize {
        self.index.as_ref().map_or(self.norm.len(), Vec::len)
    }

    fn at(&self, k: usize) -> &NChar {
        &self.norm[self.norm_index(k)]
    }

    /// A word starts at `k`: after a non-word character, the start of the
    /// text, or a change between scripts with and without spaces.
    fn hard_start(&self, k: usize) -> bool {
        let kind = self.at(k).kind;
        kind.is_word() && (k == 0 || self.at(k - 1).kind != kind)
    }

    /// A joined letter starts at `k` (its separator was taken out).
    fn soft_start(&self, k: usize) -> bool {
        k > 0 && self.at(k).kind.is_word() && self.norm_index(k - 1) + 1 != self.norm_index(k)
    }

    /// A word (or a joined letter) starts at `k`.
    fn starts_word(&self, k: usize) -> bool {
        self.hard_start(k) || self.soft_start(k)
    }

    /// A word (or a joined letter) ends before `k`.
    fn ends_word(&self, k: usize) -> bool {
        k >= self.len() || !self.at(k).kind.is_word() || self.starts_word(k)
    }

    /// `k` is a word character continuing the word before it (joined
    /// letters included).
    fn continues_word(&self, k: usize) -> bool {
        self.at(k).kind.is_word() && !self.hard_start(k)
    }
}

/// The separators to take out between single-character pieces: a space or
/// up to three punctuation characters (`r e v`, `r.e.v`, `r - e`), never a
/// line break or a web address. In scripts without spaces every character
/// is a piece, and only spaces and a few separators that no sentence needs
/// are taken out (`レ ビ ュ ー`, `評・価`; never `、` or `。`). `None` when
/// there is nothing to join.
fn joined_separators(norm: &[NChar]) -> Option<Vec<bool>> {
    let mut skip: Option<Vec<bool>> = None;
    // Just past the last one-character piece, and whether it is unspaced.
    let mut previous_single: Option<(usize, bool)> = None;
    let mut i = 0;
    while i < norm.len() {
        let kind = norm[i].kind;
        if !kind.is_word() {
            i += 1;
            continue;
        }
        let start = i;
        i += 1;
        if kind == Kind::Word {
            while i < norm.len() && norm[i].kind == Kind::Word {
                i += 1;
            }
            if i - start != 1 {
                previous_single = None;
                continue;
            }
        }
        let unspaced = kind == Kind::Unspaced;
        if let Some((prev_end, prev_unspaced)) = previous_single {
            let gap = &norm[prev_end..start];
            let joinable = |n: &NChar| match n.kind {
                Kind::Space => true,
                Kind::Punct => {
                    !(unspaced || prev_unspaced)
                        || matches!(n.c, '・' | '·' | '-' | '.' | '_' | '/' | '*' | '~' | '|')
                }
                _ => false,
            };
            if !gap.is_empty() && gap.len() <= 3 && gap.iter().all(joinable) {
                let skip = skip.get_or_insert_with(|| vec![false; norm.len()]);
                skip[prev_end..start].iter_mut().for_each(|s| *s = true);
            }
        }
        previous_single = Some((i, unspaced));
    }
    skip
}

/// `http://`, `https://` or `www.`, in any case.
fn is_url_start(text: &str) -> bool {
    let head = &text.as_bytes()[..text.len().min(8)];
    ["http://", "https://", "www."].iter().any(|prefix| {
        head.len() >= prefix.len() && head[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
    })
}

/// Characters with no appearance of their own (Unicode's default-ignorable
/// code points): zero-width spaces and joiners, the soft hyphen, bidi
/// controls, variation selectors, tags.
fn is_ignorable(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
        | '\u{FFA0}' | '\u{1BCA0}'..='\u{1BCA3}' | '\u{1D173}'..='\u{1D17A}'
        | '\u{E0000}'..='\u{E0FFF}')
}

/// Whether `c` belongs to the character before it: a combining mark, an
/// ignorable, or something whose compatibility form starts with a combining
/// mark (the half-width katakana voicing marks, three Tibetan vowels).
fn attaches(c: char) -> bool {
    match c as u32 {
        // Latin, IPA: no combining marks; the soft hyphen is ignorable.
        u if u < 0x300 => u == 0xAD,
        // Kana (but the combining voicing marks) and Han.
        0x3040..=0x3098 | 0x309B..=0x30FF | 0x3400..=0x9FFF => false,
        _ => {
            is_ignorable(c)
                || canonical_combining_class(c) != 0
                || matches!(
                    c,
                    '\u{FF9E}' | '\u{FF9F}' | '\u{0F73}' | '\u{0F75}' | '\u{0F81}'
                )
        }
    }
}

/// Scripts written without spaces between words.
fn is_unspaced(c: char) -> bool {
    matches!(c,
        '\u{0E00}'..='\u{0EFF}'        // Thai, Lao
        | '\u{1000}'..='\u{109F}'      // Myanmar
        | '\u{1780}'..='\u{17FF}'      // Khmer
        | '\u{3005}'..='\u{3007}'      // 々 〆 〇
        | '\u{3040}'..='\u{30FF}'      // hiragana, katakana
        | '\u{31F0}'..='\u{31FF}'
        | '\u{3400}'..='\u{4DBF}'      // Han
        | '\u{4E00}'..='\u{9FFF}'
        | '\u{F900}'..='\u{FAFF}'
        | '\u{20000}'..='\u{3FFFF}')
}

/// The skeleton letter: digits as the letter they stand for, `l` as `i`,
/// diacritics dropped.
fn skeleton(c: char) -> char {
    let c = match c {
        '0' => 'o',
        '1' | 'l' => 'i',
        '3' => 'e',
        '4' => 'a',
        '5' => 's',
        '7' => 't',
        c if c.is_ascii() => return c,
        c => strip_diacritics(c),
    };
    if c == 'l' {
        'i'
    } else {
        c
    }
}

/// The base letter of a Latin, Greek or Cyrillic letter with diacritics
/// (`ë` → `e`, `ё` → `e`), look-alikes mapped; anything else as it is.
fn strip_diacritics(c: char) -> char {
    if c.is_ascii() || !((c as u32) < 0x530 || ('\u{1E00}'..='\u{1EFF}').contains(&c)) {
        return c;
    }
    let mut first = None;
    decompose_canonical(c, |d| {
        first.get_or_insert(d);
    });
    let base = first.unwrap_or(c);
    look_alike(base).unwrap_or(base)
}

/// Letters that look like a Latin letter, and typographic apostrophes.
fn look_alike(c: char) -> Option<char> {
    Some(match c {
        // Cyrillic
        'А' | 'а' => 'a',
        'В' | 'Ь' | 'ь' => 'b',
        'С' | 'с' | 'Ϲ' | 'ϲ' => 'c',
        'ԁ' => 'd',
        'Е' | 'е' | 'Є' | 'є' => 'e',
        'Һ' | 'һ' | 'Н' => 'h',
        'І' | 'і' | 'Ӏ' => 'i',
        'Ј' | 'ј' | 'ϳ' => 'j',
        'К' | 'к' => 'k',
        'ӏ' => 'l',
        'М' => 'm',
        'О' | 'о' => 'o',
        'Р' | 'р' => 'p',
        'Ԛ' | 'ԛ' => 'q',
        'Ѕ' | 'ѕ' => 's',
        'Т' => 't',
        'Ѵ' | 'ѵ' => 'v',
        'Ԝ' | 'ԝ' => 'w',
        'Х' | 'х' => 'x',
        'У' | 'у' | 'Ү' | 'ү' => 'y',
        // Greek
        'Α' | 'α' => 'a',
        'Β' => 'b',
        'Ε' | 'ε' => 'e',
        'Η' => 'h',
        'Ι' | 'ι' => 'i',
        'Κ' | 'κ' => 'k',
        'Μ' => 'm',
        'Ν' => 'n',
        'Ο' | 'ο' => 'o',
        'Ρ' | 'ρ' => 'p',
        'Τ' | 'τ' => 't',
        'υ' => 'u',
        'ν' => 'v',
        'ω' => 'w',
        'Χ' | 'χ' => 'x',
        'Υ' | 'γ' => 'y',
        'Ζ' => 'z',
        // Latin look-alikes and small capitals
        'ᴀ' | 'ɑ' => 'a',
        'ʙ' | 'ƀ' => 'b',
        'ᴄ' | 'ȼ' => 'c',
        'ᴅ' | 'đ' | 'Đ' => 'd',
        'ᴇ' | 'ɛ' | 'ɇ' => 'e',
        'ꜰ' => 'f',
        'ɢ' | 'ɡ' => 'g',
        'ʜ' | 'ħ' | 'Ħ' => 'h',
        'ı' | 'ɪ' | 'ɩ' | 'ɨ' | 'İ' => 'i',
        'ᴊ' | 'ȷ' => 'j',
        'ᴋ' => 'k',
        'ʟ' | 'ł' | 'Ł' => 'l',
        'ᴍ' => 'm',
        'ɴ' => 'n',
        'ᴏ' | 'ø' | 'Ø' => 'o',
        'ᴘ' => 'p',
        'ʀ' | 'ɍ' => 'r',
        'ꜱ' => 's',
        'ᴛ' | 'ŧ' | 'Ŧ' => 't',
        'ᴜ' | 'ʉ' => 'u',
        'ᴠ' | 'ʋ' => 'v',
        'ᴡ' => 'w',
        'ʏ' => 'y',
        'ᴢ' | 'ƶ' => 'z',
        // Apostrophes
        '’' | '‘' | 'ʼ' | 'ʹ' | '′' | '´' | '＇' => '\'',
        _ => return None,
    })
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
/// with the list the hit came from.
pub fn attribute(
    forbidden: &Forbidden,
    hit: &Hit,
    template: &TemplateHits,
    fields: &[(String, &str)],
) -> Origin {
    let word = word_key(&hit.word);
    if let Some(t) = template.hits.iter().find(|t| word_key(&t.word) == word) {
        return Origin::Template {
            file: template.file.clone(),
            line: t.line,
            column: t.column,
        };
    }
    for (name, value) in fields {
        if forbidden
            .scan_locale(value, hit.locale.as_deref())
            .iter()
            .any(|h| word_key(&h.word) == word)
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
    fn a_letter_that_fits_an_entry_letter_has_its_skeleton() {
        // The automaton finds candidates by skeleton and `char_fits` checks
        // them, so every fit must share the skeleton.
        let text: String = ('\u{20}'..='\u{24F}')
            .chain('\u{370}'..='\u{3FF}')
            .chain('\u{400}'..='\u{4FF}')
            .chain("ʀᴇᴠɪᴡᴜᴘᴅᴀᴛᴄʜɴɢᴍᴏꜰʏᴋʟꜱᴢʙᴊ".chars())
            .collect();
        let entry_letters = "abcdefghijklmnopqrstuvwxyzäöüéèêëàâçîïôûùñßò0123456789";
        for t in normalize(&text, false)
            .chars
            .iter()
            .filter(|n| n.kind.is_word())
        {
            for p in entry_letters.chars() {
                if char_fits(t, p) {
                    assert_eq!(skeleton(t.c), skeleton(p), "{:?} fits {p:?}", t.c);
                }
            }
        }
    }

    #[test]
    fn attaches_knows_every_character_that_joins_the_one_before() {
        for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
            let mut first = None;
            unicode_normalization::char::decompose_compatible(c, |d| {
                first.get_or_insert(d);
            });
            let joins = is_ignorable(c)
                || canonical_combining_class(c) != 0
                || first.is_some_and(|d| d != c && canonical_combining_class(d) != 0);
            assert_eq!(attaches(c), joins, "U+{:04X}", c as u32);
        }
    }

    #[test]
    fn the_ascii_table_agrees_with_the_general_path() {
        for b in 0..128u8 {
            let (c, skel, _) = ASCII_CLASSES[b as usize];
            let c = c as char;
            if c.is_ascii_alphanumeric() {
                assert_eq!(c, (b as char).to_ascii_lowercase());
                assert_eq!(skel as char, skeleton(c), "{:?}", b as char);
            }
        }
        let kana = normalize("れビ評", false);
        assert_eq!(kana.chars.iter().map(|n| n.c).collect::<String>(), "レビ評");
        assert!(kana.chars.iter().all(|n| n.kind == Kind::Unspaced));
    }
}
