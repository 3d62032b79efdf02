//! Reading messages back: quoted-printable, base64 and RFC 2047 headers.

/// A header's value with RFC 2047 encoded words decoded (UTF-8, B or Q).
pub fn decoded_header(raw: &str, name: &str) -> String {
    let prefix = format!("{}:", name.to_ascii_lowercase());
    let mut value = String::new();
    let mut inside = false;
    for line in raw.split("\r\n") {
        if line.is_empty() {
            break;
        }
        if inside && (line.starts_with(' ') || line.starts_with('\t')) {
            value.push_str(line);
            continue;
        }
        inside = false;
        if line.to_ascii_lowercase().starts_with(&prefix) {
            value.push_str(&line[prefix.len()..]);
            inside = true;
        }
    }
    // Decode each =?charset?X?text?= and drop the whitespace between two.
    let mut out = String::new();
    let mut rest = value.trim();
    let mut last_was_word = false;
    while !rest.is_empty() {
        if let Some(start) = rest.find("=?") {
            let (before, after) = rest.split_at(start);
            if !(last_was_word && before.trim().is_empty()) {
                out.push_str(before);
            }
            let parts: Vec<&str> = after[2..].splitn(3, '?').collect();
            if parts.len() == 3 {
                if let Some(end) = parts[2].find("?=") {
                    let text = &parts[2][..end];
                    let bytes = if parts[1].eq_ignore_ascii_case("b") {
                        base64_decode(text)
                    } else {
                        qp_decode(&text.replace('_', " "))
                    };
                    out.push_str(&String::from_utf8_lossy(&bytes));
                    let consumed = 2 + parts[0].len() + 1 + parts[1].len() + 1 + end + 2;
                    rest = &after[consumed..];
                    last_was_word = true;
                    continue;
                }
            }
            out.push_str(after);
            break;
        }
        out.push_str(rest);
        break;
    }
    out.trim().to_string()
}

pub fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        })
    };
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes().filter_map(value) {
        acc = (acc << 6) | c;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// Quoted-printable to bytes (soft line breaks removed).
pub fn qp_decode(text: &str) -> Vec<u8> {
    let bytes = text.replace("=\r\n", "").replace("=\n", "").into_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(
                std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"),
                16,
            ) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}
