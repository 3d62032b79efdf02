//! Contact details (`contact`) and emoji (`emoji`) in the message text.

use super::check::{violation, Violation};
use super::RuleId;
use crate::lint::Part;

pub(super) fn contacts(part: Part, text: &str, order_id: &str, found: &mut Vec<Violation>) {
    for (l, line) in text.lines().enumerate() {
        let mut column = 0;
        for word in line.split(' ') {
            let token = word.trim_matches(|c: char| !c.is_alphanumeric() && c != '@' && c != '+');
            let lower = token.to_ascii_lowercase();
            let is_url =
                lower.starts_with("http") || lower.starts_with("www.") || lower.contains("://");
            if !is_url && email_like(token) {
                let offset = word.find(token).unwrap_or(0);
                found.push(violation(
                    RuleId::Contact,
                    part,
                    l + 1,
                    column + offset + 1,
                    token.to_string(),
                ));
            }
            column += word.chars().count() + 1;
        }
        for (start, number) in phone_numbers(line) {
            if !order_id.contains(number.trim()) && !number.contains(order_id) {
                let col = line[..start].chars().count() + 1;
                found.push(violation(RuleId::Contact, part, l + 1, col, number));
            }
        }
    }
}

pub(super) fn email_like(token: &str) -> bool {
    let Some((local, host)) = token.split_once('@') else {
        return false;
    };
    !local.is_empty() && host.contains('.') && !host.starts_with('.') && !host.ends_with('.')
}

/// Runs that look like phone numbers: digits with spaces, dashes, dots or
/// parentheses between them, nine digits or more (or a leading + and
/// eight), and not a date.
pub(super) fn phone_numbers(line: &str) -> Vec<(usize, String)> {
    let bytes = line.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let starts = bytes[i].is_ascii_digit()
            || (bytes[i] == b'+' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit))
            || bytes[i] == b'(';
        let after_word = i == 0
            || !(bytes[i - 1].is_ascii_alphanumeric()
                || bytes[i - 1] == b'/'
                || bytes[i - 1] == b'-');
        if !(starts && after_word) {
            i += 1;
            continue;
        }
        let mut j = i;
        let mut digits = 0;
        while j < bytes.len() && (bytes[j].is_ascii_digit() || b" -.()+".contains(&bytes[j])) {
            if bytes[j].is_ascii_digit() {
                digits += 1;
            }
            j += 1;
        }
        let run = line[i..j].trim_end_matches([' ', '-', '.', '(']);
        let plus = run.starts_with('+');
        let is_date = run.len() == 10 && run.as_bytes()[4] == b'-' && run.as_bytes()[7] == b'-';
        let glued = j < bytes.len() && bytes[j].is_ascii_alphabetic();
        if (digits >= 9 || (plus && digits >= 8)) && !is_date && !glued {
            out.push((i, run.to_string()));
        }
        i = j.max(i + 1);
    }
    out
}

/// Pictographs and emoji (not ordinary symbols like © or ™).
pub(super) fn is_emoji(c: char) -> bool {
    matches!(
        c as u32,
        // Pictographs, emoticons, transport, supplemental symbols; the
        // miscellaneous symbols and dingbats blocks; star and circle; the
        // emoji presentation selector.
        0x1F000..=0x1FAFF | 0x2600..=0x27BF | 0x2B50 | 0x2B55 | 0xFE0F
    )
}
