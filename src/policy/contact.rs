//! Contact details (`contact`) and emoji (`emoji`) in the message text.

use super::links::is_web_address;

/// Email addresses and phone numbers in a text, with the byte offset each
/// starts at, in order. Web addresses and the order id are not contact
/// details.
pub(super) fn contacts(text: &str, order_id: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut at = 0;
    for token in text.split_inclusive(char::is_whitespace) {
        let start = at;
        at += token.len();
        let word = token.trim_end_matches(char::is_whitespace);
        let trimmed = word.trim_matches(|c: char| !c.is_alphanumeric() && c != '@' && c != '+');
        if !is_web_address(word.trim_start_matches(|c: char| !c.is_alphanumeric()))
            && !trimmed.contains("://")
            && email_like(trimmed)
        {
            let offset = word.find(trimmed).unwrap_or(0);
            out.push((start + offset, trimmed.to_string()));
        }
    }
    let mut line_start = 0;
    for line in text.split_inclusive('\n') {
        for (start, number) in phone_numbers(line) {
            if !order_id.contains(number.trim()) && !number.contains(order_id) {
                out.push((line_start + start, number));
            }
        }
        line_start += line.len();
    }
    out.sort_by_key(|(at, _)| *at);
    out
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
