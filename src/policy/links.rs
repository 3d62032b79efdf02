//! Links and images: the `link` and `image` rules' view of a message.
//!
//! In text, a web address is any whitespace-separated token (tabs and
//! brackets, quotes and guillemets around it taken off) that starts with a
//! scheme (`http://`, `https://`), `www.` or a host name followed by a path
//! (`shop.example/review`). In HTML, the markup is read by the same WHATWG
//! tokenizer as the visible text, once: links are `href` values, images are
//! `<img>`, `<image>`, `<input type=image>`, `background` attributes, and
//! `url(…)` in a `style` attribute or a `<style>` element.

use html5gum::{DefaultEmitter, Token, Tokenizer};

/// Characters that wrap a web address in prose without belonging to it.
const OPENERS: &[char] = &[
    '(', '<', '[', '{', '"', '\'', '«', '‹', '“', '‘', '„', '「', '『', '【', '（',
];
const CLOSERS: &[char] = &[
    ')', '>', ']', '}', '"', '\'', '»', '›', '”', '’', '“', '」', '』', '】', '）', '.', ',', ';',
    ':', '!', '?', '。', '、',
];

/// Web addresses written in text, with the byte offset each starts at.
pub(super) fn urls(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut at = 0;
    for token in text.split_inclusive(char::is_whitespace) {
        let start = at;
        at += token.len();
        let word = token.trim_end_matches(char::is_whitespace);
        let trimmed = word.trim_start_matches(OPENERS);
        if is_web_address(trimmed) {
            let url = trimmed.trim_end_matches(CLOSERS);
            out.push((start + word.len() - trimmed.len(), url.to_string()));
        }
    }
    out
}

/// `http://…`, `https://…`, `//host…`, `www.…`, or a host name with a dot
/// and a top-level domain of letters followed by a path (`shop.example/x`).
pub(super) fn is_web_address(token: &str) -> bool {
    let head: String = token.chars().take(8).flat_map(char::to_lowercase).collect();
    if head.starts_with("http://") || head.starts_with("https://") || head.starts_with("www.") {
        return true;
    }
    let rest = token.strip_prefix("//").unwrap_or(token);
    let Some((host, _)) = rest.split_once('/') else {
        return false;
    };
    is_host_name(host)
}

/// `shop.example`, `a-b.co.uk`: labels of letters, digits and hyphens, at
/// least one dot, the last label letters only.
fn is_host_name(host: &str) -> bool {
    let host = host.split(':').next().unwrap_or(host);
    let labels: Vec<&str> = host.split('.').collect();
    labels.len() >= 2
        && host.len() <= 253
        && labels
            .iter()
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        && labels
            .last()
            .is_some_and(|tld| tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()))
}

/// The lower-cased host of a URL, without a leading `www.`.
pub(super) fn domain(url: &str) -> Option<String> {
    let rest = url
        .split_once("://")
        .map(|(_, r)| r)
        .or_else(|| url.strip_prefix("//"))
        .unwrap_or(url);
    let host = rest.split(['/', '?', '#']).next()?;
    let host = host.rsplit('@').next()?.split(':').next()?;
    let host = host.to_ascii_lowercase();
    // www.example.com and example.com are the same site.
    let host = host.strip_prefix("www.").unwrap_or(&host).to_string();
    (!host.is_empty()).then_some(host)
}

pub(super) fn is_allowed(host: &str, allowed: &[String]) -> bool {
    allowed
        .iter()
        .any(|a| host == a || host.ends_with(&format!(".{a}")))
}

/// What the markup of an HTML body points at, each with the byte offset of
/// the tag or attribute it is written in.
#[derive(Debug, Default)]
pub(super) struct Markup {
    /// `href` values that lead to the web (a scheme, `//`, or a host name
    /// with a path), decoded.
    pub links: Vec<(usize, String)>,
    /// The addresses of `mailto:` links.
    pub mail_addresses: Vec<(usize, String)>,
    /// Images: the tag, or the attribute, as written (cut at 200 bytes).
    pub images: Vec<(usize, String)>,
}

/// Reads the links and images of an HTML body in one pass.
pub(super) fn markup(html: &str) -> Markup {
    let mut found = Markup::default();
    let mut emitter = DefaultEmitter::<usize>::new_with_span();
    emitter.naively_switch_states(true);
    let mut in_style = false;
    for token in Tokenizer::new_with_emitter(html, emitter) {
        let Ok(token) = token;
        match token {
            Token::StartTag(tag) => {
                let name = tag.name.as_slice();
                in_style = name == b"style";
                let attr = |n: &[u8]| tag.attributes.get(n).map(|v| String::from_utf8_lossy(v));
                let is_image = name == b"img"
                    || name == b"image"
                    || (name == b"input"
                        && attr(b"type").is_some_and(|t| t.eq_ignore_ascii_case("image")));
                if is_image {
                    found
                        .images
                        .push((tag.span.start, written(html, tag.span.start, tag.span.end)));
                }
                for (key, value) in &tag.attributes {
                    let value_text = String::from_utf8_lossy(value).trim().to_string();
                    let at = value.span.start;
                    match key.as_slice() {
                        // An <image>'s href is its picture, not a link.
                        b"href" if !is_image => {
                            if let Some(address) = strip_prefix_ci(&value_text, "mailto:") {
                                let address = address.split('?').next().unwrap_or_default();
                                found.mail_addresses.push((at, address.to_string()));
                            } else if is_web_address(&value_text) || value_text.starts_with("//") {
                                found.links.push((at, value_text));
                            }
                        }
                        b"background" if !is_image && !value_text.is_empty() => {
                            found.images.push((at, written(html, at, value.span.end)));
                        }
                        b"style" if has_css_image(&value_text) => {
                            found.images.push((at, written(html, at, value.span.end)));
                        }
                        _ => {}
                    }
                }
            }
            Token::String(text) if in_style && has_css_image(&String::from_utf8_lossy(&text)) => {
                found.images.push((
                    text.span.start,
                    written(html, text.span.start, text.span.end),
                ));
            }
            Token::EndTag(_) => in_style = false,
            _ => {}
        }
    }
    found
}

/// `url(` in CSS: a background image, a list-style image, a border image.
fn has_css_image(css: &str) -> bool {
    css.to_ascii_lowercase()
        .replace(char::is_whitespace, "")
        .contains("url(")
}

fn strip_prefix_ci<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// The markup between two offsets, at most 200 bytes of it (a tag left open
/// to the end of a long body is not copied whole).
fn written(html: &str, start: usize, end: usize) -> String {
    let mut end = end.min(html.len()).min(start + 200);
    while !html.is_char_boundary(end) {
        end -= 1;
    }
    html.get(start..end).unwrap_or_default().to_string()
}
