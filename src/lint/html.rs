//! The text a reader sees in an HTML body, for the lint.
//!
//! One pass of a WHATWG tokenizer (html5gum) over the markup: character
//! references are decoded as a browser decodes them, comments and the
//! contents of `<script>` and `<style>` are dropped, and link targets are
//! left out because they are addresses, not prose. Building a DOM would cost
//! more than the whole lint for nothing it needs, since the lint only asks
//! which characters end up next to each other on screen.

use html5gum::{DefaultEmitter, HtmlString, Span, SpanBound, Spanned, Token, Tokenizer};

/// Elements that start a new line when rendered. Any other element, known or
/// not, is inline and does not separate words: `re<b>view</b>` and
/// `<x-a>re</x-a><x-a>view</x-a>` both read "review", as in a mail client.
const BREAKING: &[&[u8]] = &[
    b"address",
    b"article",
    b"aside",
    b"blockquote",
    b"body",
    b"br",
    b"caption",
    b"center",
    b"dd",
    b"details",
    b"dialog",
    b"div",
    b"dl",
    b"dt",
    b"fieldset",
    b"figcaption",
    b"figure",
    b"footer",
    b"form",
    b"h1",
    b"h2",
    b"h3",
    b"h4",
    b"h5",
    b"h6",
    b"head",
    b"header",
    b"hr",
    b"html",
    b"li",
    b"main",
    b"nav",
    b"ol",
    b"option",
    b"p",
    b"pre",
    b"section",
    b"summary",
    b"table",
    b"tbody",
    b"tfoot",
    b"thead",
    b"title",
    b"tr",
    b"ul",
];

/// Elements shown side by side on one line, as separate words: table
/// cells. One letter a cell still reads as spaced letters (`r e v`), which
/// the lint joins.
const CELLS: &[&[u8]] = &[b"td", b"th"];

/// Elements whose content is never shown as text.
const HIDDEN: &[&[u8]] = &[b"script", b"style", b"template"];

/// The visible text of an HTML body: tags dropped, character references
/// decoded, link targets left out. Inline tags do not split words
/// (`re<b>view</b>` reads "review"); block elements and `<br>` start a new
/// line. An image's `alt` and any element's `title` text are shown to the
/// reader (when images are blocked, or on hover), so they are included, each
/// on a line of its own.
pub fn visible_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    walk(html, DefaultEmitter::default(), |text, _| {
        out.push_str(text)
    });
    out
}

/// [`visible_text`], and for each byte of it the byte of `html` it was read
/// from, so that a finding in the text can be pointed at in the file. A
/// piece of text written differently in the markup (with character
/// references) points at where that piece starts.
pub fn visible_text_with_sources(html: &str) -> (String, Vec<usize>) {
    let mut out = String::with_capacity(html.len());
    let mut sources = Vec::with_capacity(html.len());
    walk(
        html,
        DefaultEmitter::<usize>::new_with_span(),
        |text, span: Span<usize>| {
            // Attribute values come with the span of the whole attribute.
            let written = html.get(span.start..span.end).unwrap_or_default();
            match written.find(text) {
                Some(at) => sources.extend((0..text.len()).map(|i| span.start + at + i)),
                None => align(text, written, span.start, &mut sources),
            }
            out.push_str(text);
        },
    );
    (out, sources)
}

/// Maps each byte of decoded `text` to the byte of `written` (its markup,
/// at `base`) it came from: characters written as themselves map one to
/// one, a character reference (`&eacute;`, `&#233;`) maps to its `&`.
fn align(text: &str, written: &str, base: usize, sources: &mut Vec<usize>) {
    let mut cursor = 0;
    for c in text.chars() {
        let rest = written.get(cursor..).unwrap_or_default();
        let at = base + cursor.min(written.len());
        sources.extend(std::iter::repeat_n(at, c.len_utf8()));
        cursor += match reference_len(rest) {
            Some(len) => len,
            None => rest.chars().next().map_or(0, char::len_utf8),
        };
    }
}

/// The length of the character reference `rest` starts with (`&amp;`,
/// `&#233;`, `&#xE9;`), if it starts with one.
fn reference_len(rest: &str) -> Option<usize> {
    let body = rest.strip_prefix('&')?;
    let end = body.find(';')?;
    let name = &body[..end];
    let numeric = name
        .strip_prefix('#')
        .map(|n| n.strip_prefix(['x', 'X']).unwrap_or(n));
    let valid = match numeric {
        Some(digits) => !digits.is_empty() && digits.chars().all(|c| c.is_ascii_hexdigit()),
        None => !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric()),
    };
    (valid && end <= 32).then_some(end + 2)
}

/// One pass of the tokenizer over `html`, handing each piece of visible
/// text, line breaks included, to `push` with the span it came from.
fn walk<S: SpanBound>(
    html: &str,
    mut emitter: DefaultEmitter<S>,
    mut push: impl FnMut(&str, Span<S>),
) {
    // Lets the tokenizer read `<script>` and `<style>` as raw text, so markup
    // inside a script is not mistaken for elements.
    emitter.naively_switch_states(true);
    let mut hidden_depth = 0usize;
    for token in Tokenizer::new_with_emitter(html, emitter) {
        let Ok(token) = token;
        match token {
            Token::String(text) if hidden_depth == 0 => {
                push(&String::from_utf8_lossy(&text), text.span);
            }
            Token::StartTag(tag) => {
                let name = tag.name.as_slice();
                if HIDDEN.contains(&name) {
                    if !tag.self_closing {
                        hidden_depth += 1;
                    }
                    continue;
                }
                if hidden_depth > 0 {
                    continue;
                }
                let shown: Vec<&Spanned<HtmlString, S>> = [&b"alt"[..], &b"title"[..]]
                    .into_iter()
                    .filter(|a| *a != b"alt" || name == b"img" || name == b"area")
                    .filter_map(|a| tag.attributes.get(a))
                    .filter(|v| !v.is_empty())
                    .collect();
                // An image without alt or title text is inline and shows
                // nothing in words: `re<img src=x>view` reads "review".
                if BREAKING.contains(&name) || !shown.is_empty() {
                    push("\n", tag.span);
                } else if CELLS.contains(&name) {
                    push(" ", tag.span);
                }
                for value in shown {
                    push(&String::from_utf8_lossy(value), value.span);
                    push("\n", value.span);
                }
            }
            Token::EndTag(tag) => {
                let name = tag.name.as_slice();
                if HIDDEN.contains(&name) {
                    hidden_depth = hidden_depth.saturating_sub(1);
                } else if hidden_depth == 0 && BREAKING.contains(&name) {
                    push("\n", tag.span);
                } else if hidden_depth == 0 && CELLS.contains(&name) {
                    push(" ", tag.span);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{visible_text, visible_text_with_sources};

    /// Every byte of the visible text knows where in the markup it came
    /// from: the start of a split word, alt text, a character reference.
    #[test]
    fn visible_text_points_back_into_the_markup() {
        let html = "<p>Please re<b>view</b></p><img alt=\"A review\"><p>r&eacute;view</p>";
        let (text, sources) = visible_text_with_sources(html);
        assert_eq!(text, visible_text(html));
        assert_eq!(sources.len(), text.len());
        let source_of = |word: &str, nth: usize| {
            let at = text.match_indices(word).nth(nth).unwrap().0;
            sources[at]
        };
        assert_eq!(source_of("review", 0), html.find("re<b>").unwrap());
        assert_eq!(source_of("review", 1), html.find("review\"").unwrap());
        assert_eq!(source_of("réview", 0), html.find("r&eacute;").unwrap());
        // After the reference, characters map one to one again.
        assert_eq!(
            sources[text.rfind("view").unwrap()],
            html.rfind("view</p>").unwrap()
        );
    }

    #[test]
    fn link_targets_are_left_out_and_references_decoded() {
        let text = visible_text(r#"<p>Hi &amp; <a href="https://x.com/review">tell us</a></p>"#);
        assert!(text.contains("Hi & tell us"), "{text:?}");
        assert!(!text.contains("x.com"), "{text:?}");
    }

    #[test]
    fn inline_tags_join_and_blocks_break() {
        assert_eq!(visible_text("re<b>view</b>").trim(), "review");
        assert_eq!(
            visible_text("<x-a>re</x-a><x-a>view</x-a>").trim(),
            "review"
        );
        assert_eq!(visible_text("<p>re</p><p>view</p>").trim(), "re\n\nview");
        assert_eq!(visible_text("re<br>view").trim(), "re\nview");
        assert_eq!(
            visible_text("<tr><td>pre</td><td>view</td></tr>").trim(),
            "pre  view"
        );
        assert_eq!(visible_text("re<img src=x.png>view").trim(), "review");
    }

    #[test]
    fn scripts_styles_and_comments_are_not_text() {
        let text = visible_text(
            "<style>p::after { content: 'x' }</style><p>Hello<!-- review --></p>\
             <script>if (a < b) { document.write('<p>review</p>') }</script>",
        );
        assert_eq!(text.trim(), "Hello");
    }

    #[test]
    fn alt_and_title_text_is_shown() {
        let text = visible_text(r#"<p>Hi<img src="x.png" alt="Leave a review"></p>"#);
        assert!(text.contains("\nLeave a review\n"), "{text:?}");
        let text = visible_text(r#"<span title="Please review">Hi</span>"#);
        assert!(text.contains("Please review"), "{text:?}");
        let text = visible_text(r#"<a href="x" alt="not shown">Hi</a>"#);
        assert!(!text.contains("not shown"), "{text:?}");
    }

    #[test]
    fn unclosed_and_broken_markup_is_still_read() {
        let text = visible_text("<p>Please re<b>view <i unclosed");
        assert!(text.starts_with("\nPlease review"), "{text:?}");
        assert_eq!(visible_text("").trim(), "");
        assert_eq!(
            visible_text("a &lt;b&gt; &zzz; &#x1F600;"),
            "a <b> &zzz; 😀"
        );
    }
}
