//! The Unicode normaliser: the text as the matcher sees it, each character
//! knowing the bytes of the original it came from. See the module
//! documentation of [`crate::lint`] for the steps.

use unicode_normalization::char::{
    canonical_combining_class, decompose_canonical, is_combining_mark,
};
use unicode_normalization::{is_nfkc_quick, IsNormalized, UnicodeNormalization};

/// The diacritics of a Latin, Greek or Cyrillic letter, as [`mark_bits`].
pub(super) fn marks_of(c: char) -> u16 {
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
pub(super) fn mark_bits(mark: char) -> u16 {
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

/// What a character is, for word boundaries and joining.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
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
    pub(super) fn is_word(self) -> bool {
        matches!(self, Self::Word | Self::Unspaced)
    }
    pub(super) fn is_space(self) -> bool {
        matches!(self, Self::Space | Self::Newline)
    }
}

/// One normalised character and the original text it came from.
#[derive(Debug, Clone, Copy)]
pub(super) struct NChar {
    /// Normalised: NFKC, folded, look-alikes mapped; diacritics kept.
    pub(super) c: char,
    /// Byte range in the original text.
    pub(super) start: u32,
    pub(super) end: u32,
    pub(super) kind: Kind,
    /// Combining marks that stayed on `c` without composing (see
    /// [`mark_bits`]).
    pub(super) extra_marks: u16,
}

/// A text, normalised: its characters, and the skeleton the automaton runs
/// over (one skeleton character per normalised character, in UTF-8).
pub(super) struct Normalized {
    pub(super) chars: Vec<NChar>,
    pub(super) skeleton: Vec<u8>,
    /// Whether every skeleton character is one byte.
    pub(super) ascii: bool,
}

/// The skeleton character of a normalised one: digits as the letters they
/// stand for, `l` as `i`, diacritics dropped; a web address as NUL, and
/// punctuation beyond ASCII (which no entry holds) as one placeholder.
pub(super) fn skeleton_of(n: &NChar) -> char {
    match n.kind {
        Kind::Url => '\0',
        Kind::Punct if !n.c.is_ascii() => '\u{1}',
        Kind::Punct | Kind::Space | Kind::Newline => n.c,
        Kind::Word | Kind::Unspaced => skeleton(n.c),
    }
}

/// Builds a [`Normalized`] in one pass over the text.
pub(super) struct Normalizer<'t> {
    text: &'t str,
    out: Normalized,
    /// Marking web addresses (off for list entries).
    find_urls: bool,
    in_url: bool,
}

/// Normalises `text`: every normalised character knows the original bytes
/// it came from. With `find_urls`, web addresses are marked.
pub(super) fn normalize(text: &str, find_urls: bool) -> Normalized {
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
pub(super) enum AsciiClass {
    Letter,
    /// `h` or `w`: a letter that may start a web address.
    UrlStart,
    Space,
    Newline,
    /// `/`: may end the host name of a web address written without a
    /// scheme (`shop.example/review`).
    Slash,
    Other,
}

/// Per ASCII byte: its normalised form, its skeleton and its class.
pub(super) const ASCII_CLASSES: [(u8, u8, AsciiClass); 128] = {
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
            b'/' => AsciiClass::Slash,
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
            AsciiClass::Slash => {
                if self.find_urls && !self.in_url && self.host_before() {
                    self.in_url = true;
                }
                return self.push(c as char, start, end, Kind::Punct);
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

    /// Whether the characters just before a `/` are a host name starting a
    /// word (`shop.example`, `a-b.co.uk`: labels of ASCII letters, digits
    /// and hyphens, a dot, a last label of two letters or more); if so they
    /// are marked as part of a web address. Looks back at most 253
    /// characters (the longest host name), so the text stays linear.
    fn host_before(&mut self) -> bool {
        let chars = &self.out.chars;
        let is_host_char = |n: &NChar| {
            (n.c.is_ascii_alphanumeric() || n.c == '-' || n.c == '.')
                && matches!(n.kind, Kind::Word | Kind::Punct)
        };
        let len = chars
            .iter()
            .rev()
            .take(254)
            .take_while(|n| is_host_char(n))
            .count();
        if len == 0 || len > 253 {
            return false;
        }
        let from = chars.len() - len;
        if chars[..from]
            .last()
            .is_some_and(|n| n.kind == Kind::Url || n.c == '@')
        {
            return false;
        }
        let host: String = chars[from..].iter().map(|n| n.c).collect();
        let labels: Vec<&str> = host.split('.').collect();
        let valid = labels.len() >= 2
            && labels.iter().all(|l| !l.is_empty())
            && labels
                .last()
                .is_some_and(|t| t.len() >= 2 && t.chars().all(|c| c.is_ascii_alphabetic()));
        if !valid {
            return false;
        }
        // Every host character is ASCII: one skeleton byte each, at the end.
        let skeleton_from = self.out.skeleton.len() - len;
        for n in &mut self.out.chars[from..] {
            n.kind = Kind::Url;
        }
        self.out.skeleton[skeleton_from..].fill(0);
        true
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
pub(super) fn kana_or_han(c: char) -> Option<char> {
    match c as u32 {
        0x3041..=0x3096 => char::from_u32(c as u32 + 0x60),
        0x30A1..=0x30FA | 0x30FC | 0x4E00..=0x9FFF => Some(c),
        _ => None,
    }
}

/// `http://`, `https://` or `www.`, in any case.
pub(super) fn is_url_start(text: &str) -> bool {
    let head = &text.as_bytes()[..text.len().min(8)];
    ["http://", "https://", "www."].iter().any(|prefix| {
        head.len() >= prefix.len() && head[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
    })
}

/// Characters with no appearance of their own (Unicode's default-ignorable
/// code points): zero-width spaces and joiners, the soft hyphen, bidi
/// controls, variation selectors, tags.
pub(super) fn is_ignorable(c: char) -> bool {
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
pub(super) fn attaches(c: char) -> bool {
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
pub(super) fn is_unspaced(c: char) -> bool {
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
pub(super) fn skeleton(c: char) -> char {
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
pub(super) fn strip_diacritics(c: char) -> char {
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
pub(super) fn look_alike(c: char) -> Option<char> {
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

#[cfg(test)]
mod tests {
    use super::*;
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
