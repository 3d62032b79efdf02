//! The matcher: one Aho-Corasick automaton over the skeleton of the
//! normalised text finds candidates, each checked letter by letter and for
//! word boundaries; allowed phrases and overlaps are settled last.

use std::cell::OnceCell;

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};

use super::finding::Hit;
use super::lists::EntrySpec;
use super::normalize::{
    marks_of, normalize, skeleton_of, strip_diacritics, Kind, NChar, Normalized,
};
use super::LintError;

/// One list entry, parsed.
#[derive(Debug, Clone)]
pub(super) struct Entry {
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
pub(super) struct Variant {
    entry: usize,
    /// The entry's normalised characters, compared letter by letter.
    chars: Box<[char]>,
    /// Whether the entry itself has digits (then any digit count is fine).
    has_digits: bool,
}

/// One list (or the default list with a locale's), compiled.
#[derive(Debug)]
pub(super) struct Matcher {
    entries: Vec<Entry>,
    variants: Vec<Variant>,
    automaton: Option<AhoCorasick>,
}

impl Matcher {
    /// Compiles lists into one automaton; entries keep the lists' order,
    /// which decides the entry reported when several match the same word.
    pub(super) fn build(lists: &[(Option<&str>, &[String])]) -> Result<Self, LintError> {
        let mut entries = Vec::new();
        let mut variants = Vec::new();
        let mut literals: Vec<String> = Vec::new();
        for (locale, list) in lists {
            for pattern in *list {
                let EntrySpec {
                    allow,
                    infix,
                    prefix,
                    stem,
                } = EntrySpec::parse(pattern)?;
                let norm = normalize(stem, false).chars;
                if norm.is_empty() {
                    return Err(LintError::NoLetters {
                        pattern: pattern.clone(),
                    });
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
                    .build(&literals)?,
            )
        };
        Ok(Self {
            entries,
            variants,
            automaton,
        })
    }

    pub(super) fn scan(&self, text: &str) -> Vec<Hit> {
        let Some(automaton) = &self.automaton else {
            return Vec::new();
        };
        let normalized = normalize(text, true);
        let stream = Stream::build(&normalized);
        let extents = OnceCell::new();
        let candidates: Vec<Candidate> = automaton
            .find_overlapping_iter(&stream.skeleton[..])
            .filter_map(|m| {
                let variant = &self.variants[m.pattern().as_usize()];
                let a = stream.position(m.start());
                let b = stream.position(m.end() - 1) + 1;
                self.verify(variant, (a, b), &stream, &extents)
            })
            .collect();
        if candidates.is_empty() {
            return Vec::new();
        }
        self.hits(text, &stream, self.settle(candidates))
    }

    /// A match of the automaton at stream positions `a..b`, checked letter by
    /// letter and for word boundaries, and widened to the whole word for
    /// entries with `*`.
    fn verify(
        &self,
        variant: &Variant,
        (a, b): (usize, usize),
        stream: &Stream,
        extents: &OnceCell<Extents>,
    ) -> Option<Candidate> {
        if b - a != variant.chars.len() {
            return None;
        }
        let entry = &self.entries[variant.entry];
        let (mut letters, mut digits, mut in_number) = (0usize, 0usize, false);
        let is_digit = |k: usize| k < stream.len() && stream.at(k).c.is_ascii_digit();
        let letters_fit = variant.chars.iter().enumerate().all(|(k, &p)| {
            let t = stream.at(a + k);
            if t.c.is_ascii_digit() {
                digits += 1;
                // A digit reads as a letter only alone among letters: two
                // digits side by side are a number (a model `AV15`, a year).
                in_number |= (a + k > 0 && is_digit(a + k - 1)) || is_digit(a + k + 1);
            } else if t.c.is_alphabetic() {
                letters += 1;
            }
            char_fits(t, p)
        });
        let digits_ok = variant.has_digits || (letters > 0 && letters >= digits && !in_number);
        if !letters_fit || !digits_ok {
            return None;
        }
        if !entry.infix && !stream.starts_word(a) {
            return None;
        }
        if !entry.prefix && !entry.unspaced && !stream.ends_word(b) {
            return None;
        }
        let (mut a, mut b) = (a, b);
        if !entry.unspaced && (entry.infix || entry.prefix) {
            // Word extents are worked out once for the whole text, so that
            // widening every candidate inside one long word stays linear.
            let extents = extents.get_or_init(|| Extents::of(stream));
            if entry.infix {
                a = extents.start[a] as usize;
            }
            if entry.prefix {
                b = extents.end[b] as usize;
            }
        }
        Some(Candidate {
            start: a,
            end: b,
            entry: variant.entry,
        })
    }

    /// Drops candidates inside an allowed phrase and the allowed phrases
    /// themselves; sorts the rest by position, then by list order.
    fn settle(&self, mut candidates: Vec<Candidate>) -> Vec<Candidate> {
        let allowed = Allowed::new(
            candidates
                .iter()
                .filter(|c| self.entries[c.entry].allow)
                .map(|c| (c.start, c.end))
                .collect(),
        );
        candidates.retain(|c| !self.entries[c.entry].allow && !allowed.covers(c.start, c.end));
        candidates.sort_by_key(|c| (c.start, c.entry));
        candidates
    }

    /// One hit for each candidate not overlapping an earlier one, placed in
    /// the original text.
    fn hits(&self, text: &str, stream: &Stream, candidates: Vec<Candidate>) -> Vec<Hit> {
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

/// Allowed phrases found in a text, for asking in logarithmic time whether
/// one of them covers a candidate.
struct Allowed {
    /// Sorted by start.
    spans: Vec<(usize, usize)>,
    /// The furthest end among `spans[..=i]`.
    reach: Vec<usize>,
}

impl Allowed {
    fn new(mut spans: Vec<(usize, usize)>) -> Self {
        spans.sort_unstable();
        let reach = spans
            .iter()
            .scan(0, |furthest, &(_, end)| {
                *furthest = end.max(*furthest);
                Some(*furthest)
            })
            .collect();
        Self { spans, reach }
    }

    /// Whether an allowed phrase starting at or before `start` reaches `end`.
    fn covers(&self, start: usize, end: usize) -> bool {
        let before = self.spans.partition_point(|&(s, _)| s <= start);
        before > 0 && self.reach[before - 1] >= end
    }
}

/// For every stream position, where the word around it starts and ends
/// (joined letters count as one word).
struct Extents {
    /// Position → the first position of its word.
    start: Vec<u32>,
    /// Position → the first position after its word; one entry more than the
    /// stream, for the end of the text.
    end: Vec<u32>,
}

impl Extents {
    fn of(stream: &Stream) -> Self {
        let len = stream.len();
        let mut start = Vec::with_capacity(len);
        for k in 0..len {
            let s = if k > 0 && stream.continues_word(k) {
                start[k - 1]
            } else {
                k as u32
            };
            start.push(s);
        }
        let mut end = vec![len as u32; len + 1];
        for k in (0..len).rev() {
            if !stream.continues_word(k) {
                end[k] = k as u32;
            } else {
                end[k] = end[k + 1];
            }
        }
        Self { start, end }
    }
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

fn digit_stands_for(digit: char, letter: char) -> bool {
    matches!(
        (digit, letter),
        ('0', 'o') | ('1', 'i') | ('1', 'l') | ('3', 'e') | ('4', 'a') | ('5', 's') | ('7', 't')
    )
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

/// The longest separator taken out between single-character pieces, in
/// normalised characters (a run of white space is one).
pub(super) const MAX_JOIN_GAP: usize = 8;

/// The separators to take out between single-character pieces: any run of
/// spaces and punctuation up to [`MAX_JOIN_GAP`] characters long (`r e v`,
/// `r.e.v`, `r -- e`, `r … e`), never one holding a letter, a digit, a line
/// break or a web address. In scripts without spaces every character
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
            if !gap.is_empty() && gap.len() <= MAX_JOIN_GAP && gap.iter().all(joinable) {
                let skip = skip.get_or_insert_with(|| vec![false; norm.len()]);
                skip[prev_end..start].iter_mut().for_each(|s| *s = true);
            }
        }
        previous_single = Some((i, unspaced));
    }
    skip
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lint::normalize::skeleton;
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
}
