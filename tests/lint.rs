//! The forbidden-word lint on its own: the labelled corpus under
//! `tests/lint_corpus/` (every violation caught, no clean message flagged),
//! the per-locale API, positions in the original text, the borderline words
//! decided on purpose, property tests for hidden characters and look-alikes,
//! and the time a typical message takes.

use std::collections::BTreeMap;
use std::path::Path;

use followupd::lint::{self, Forbidden, Hit, Origin, TemplateHits};
use proptest::prelude::*;

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// The default list with the shipped locale lists, as the service runs it.
fn shipped() -> &'static Forbidden {
    static SHIPPED: std::sync::OnceLock<Forbidden> = std::sync::OnceLock::new();
    SHIPPED.get_or_init(|| {
        Forbidden::with_locales(&strings(lint::DEFAULT_FORBIDDEN), &BTreeMap::new()).unwrap()
    })
}

fn words(hits: &[Hit]) -> Vec<&str> {
    hits.iter().map(|h| h.word.as_str()).collect()
}

/// Every hit points at its word: the original text at (line, column)
/// starts with the word as reported.
fn check_positions(text: &str, hits: &[Hit]) -> Result<(), String> {
    for hit in hits {
        let line = text
            .split('\n')
            .nth(hit.line - 1)
            .ok_or_else(|| format!("{hit:?}: there is no line {}", hit.line))?;
        let at: String = line.chars().skip(hit.column - 1).collect();
        let rest: String = std::iter::once(at)
            .chain(text.split('\n').skip(hit.line).map(String::from))
            .collect::<Vec<_>>()
            .join("\n");
        if hit.word.is_empty() || !rest.starts_with(&hit.word) {
            return Err(format!(
                "{hit:?} does not point at its word (found {:?})",
                rest.chars().take(20).collect::<String>()
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The corpus

struct Message {
    file: String,
    line: usize,
    locale: Option<String>,
    html: bool,
    text: String,
}

/// Decodes `\u{…}`, `\r`, `\n` and `\\`.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('u') => {
                assert_eq!(chars.next(), Some('{'), "bad escape in {s:?}");
                let hex: String = chars.by_ref().take_while(|&c| c != '}').collect();
                let code = u32::from_str_radix(&hex, 16).expect("hex escape");
                out.push(char::from_u32(code).expect("a character"));
            }
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some('\\') => out.push('\\'),
            other => panic!("unknown escape \\{other:?} in {s:?}"),
        }
    }
    out
}

/// Reads one corpus file (format: tests/lint_corpus/README.md).
fn read_corpus(path: &Path) -> Vec<Message> {
    let source = std::fs::read_to_string(path).unwrap();
    let file = path.display().to_string();
    let mut file_locale: Option<String> = None;
    let mut messages = Vec::new();
    let mut current: Option<(Message, Vec<&str>, bool)> = None; // message, lines, in headers
    let finish = |current: Option<(Message, Vec<&str>, bool)>, messages: &mut Vec<Message>| {
        if let Some((mut m, lines, _)) = current {
            m.text = unescape(&lines.join("\n"));
            assert!(
                !m.text.trim().is_empty(),
                "{}:{}: empty message",
                m.file,
                m.line
            );
            messages.push(m);
        }
    };
    for (index, line) in source.lines().enumerate() {
        if line == "---" {
            finish(current.take(), &mut messages);
            current = Some((
                Message {
                    file: file.clone(),
                    line: index + 2,
                    locale: file_locale.clone(),
                    html: false,
                    text: String::new(),
                },
                Vec::new(),
                true,
            ));
            continue;
        }
        match &mut current {
            None => {
                if let Some(l) = line.strip_prefix("# locale:") {
                    file_locale = Some(l.trim().to_string());
                }
            }
            Some((m, lines, in_headers)) => {
                if *in_headers && line.starts_with('#') {
                    if let Some(l) = line.strip_prefix("# locale:") {
                        m.locale = Some(l.trim().to_string());
                    } else if line.trim() == "# html" {
                        m.html = true;
                    }
                    m.line = index + 2;
                } else {
                    *in_headers = false;
                    lines.push(line);
                }
            }
        }
    }
    finish(current, &mut messages);
    messages
}

#[test]
fn corpus_every_violation_is_caught_and_no_clean_message_is_flagged() {
    let forbidden = shipped();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lint_corpus");
    let mut failures = Vec::new();
    let mut counts: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (kind, must_hit) in [("violations", true), ("clean", false)] {
        let mut files: Vec<_> = std::fs::read_dir(root.join(kind))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "txt"))
            .collect();
        files.sort();
        for path in files {
            let language = path.file_stem().unwrap().to_string_lossy().to_string();
            let messages = read_corpus(&path);
            let count = counts.entry(language).or_default();
            if must_hit {
                count.0 += messages.len();
            } else {
                count.1 += messages.len();
            }
            for m in messages {
                let text = if m.html {
                    lint::visible_text(&m.text)
                } else {
                    m.text.clone()
                };
                let hits = forbidden.scan_locale(&text, m.locale.as_deref());
                let place = format!("{}:{} ({:?})", m.file, m.line, m.locale);
                if let Err(e) = check_positions(&text, &hits) {
                    failures.push(format!("{place}: {e}"));
                }
                if must_hit && hits.is_empty() {
                    failures.push(format!("{place}: NOT CAUGHT: {:?}", m.text));
                } else if !must_hit && !hits.is_empty() {
                    failures.push(format!(
                        "{place}: FALSE ALARM on {:?} in {:?}",
                        words(&hits),
                        m.text
                    ));
                }
            }
        }
    }
    let total: usize = counts.values().map(|(v, c)| v + c).sum();
    println!("lint corpus, violations/clean per language: {counts:?}; {total} messages");
    for failure in &failures {
        println!("{failure}");
    }
    assert!(
        failures.is_empty(),
        "{} of {total} corpus messages wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(total >= 300, "the corpus has only {total} messages");
    for language in lint::SHIPPED_LOCALES {
        let (v, c) = counts.get(*language).copied().unwrap_or_default();
        assert!(v >= 20 && c >= 20, "{language}: {v} violations, {c} clean");
    }
}

// ---------------------------------------------------------------------------
// Lists and locales

#[test]
fn shipped_lists_exist_for_each_language_and_fall_back_from_regions() {
    for language in ["en", "de", "fr", "es", "it", "ja"] {
        assert!(lint::default_list(language).is_some(), "{language}");
    }
    assert_eq!(lint::default_list("en"), Some(lint::DEFAULT_FORBIDDEN));
    assert_eq!(lint::default_list("de-AT"), lint::default_list("de"));
    assert_eq!(lint::default_list("DE_at"), lint::default_list("de"));
    assert_eq!(lint::default_list("pt"), None);
    assert_eq!(lint::default_list("pt-BR"), None);
    // Every shipped entry is valid.
    let per_locale: BTreeMap<String, Vec<String>> = ["de", "fr", "es", "it", "ja"]
        .iter()
        .map(|l| (l.to_string(), strings(lint::default_list(l).unwrap())))
        .collect();
    assert_eq!(
        Forbidden::with_locales(&strings(lint::DEFAULT_FORBIDDEN), &per_locale).unwrap(),
        *shipped()
    );
}

#[test]
fn scan_is_the_default_list_and_scan_locale_adds_the_locale_list() {
    let f = shipped();
    let text = "Bitte bewerten Sie uns, a review helps.";
    assert_eq!(words(&f.scan(text)), ["review"]);
    assert_eq!(words(&f.scan_locale(text, None)), ["review"]);
    assert_eq!(
        words(&f.scan_locale(text, Some("de"))),
        ["bewerten", "review"]
    );
    // The locale's tag: exact, then language, then only the default list.
    assert_eq!(f.scan_locale(text, Some("de-AT")).len(), 2);
    assert_eq!(f.scan_locale(text, Some("de_at")).len(), 2);
    assert_eq!(f.scan_locale(text, Some("pt-BR")).len(), 1);
    assert_eq!(f.resolve_locale(Some("de-AT")), Some("de"));
    assert_eq!(f.resolve_locale(Some("pt")), None);
    assert_eq!(f.resolve_locale(None), None);
    // The English list applies in every locale.
    for locale in ["de", "fr", "es", "it", "ja"] {
        assert_eq!(
            words(&f.scan_locale("Please update us.", Some(locale))),
            ["update"],
            "{locale}"
        );
    }
    // Which list a hit came from.
    let hits = f.scan_locale(text, Some("de-AT"));
    assert_eq!(hits[0].locale.as_deref(), Some("de"));
    assert_eq!(hits[0].pattern, "bewert*");
    assert_eq!(hits[1].locale, None);
    // `new` has the default list only, as before.
    let plain = Forbidden::new(&strings(lint::DEFAULT_FORBIDDEN)).unwrap();
    assert_eq!(plain.scan_locale(text, Some("de")).len(), 1);
    assert!(plain.locale_lists().is_empty());
}

#[test]
fn seller_lists_replace_shipped_ones_and_exact_tags_win() {
    let default = strings(&["review*"]);
    let mut per_locale = BTreeMap::new();
    per_locale.insert("de".to_string(), strings(&["rückmeldung*"]));
    per_locale.insert("de_CH".to_string(), strings(&["gutachten"]));
    per_locale.insert("fr".to_string(), Vec::new());
    per_locale.insert("pt".to_string(), strings(&["avaliação*", "avaliacao*"]));
    let f = Forbidden::with_locales(&default, &per_locale).unwrap();
    let de = "Ihre Rückmeldung, Ihre Bewertung, ein Gutachten, a review";
    // de: the seller's list instead of the shipped one.
    assert_eq!(
        words(&f.scan_locale(de, Some("de"))),
        ["Rückmeldung", "review"]
    );
    // de-CH: its own list; the language's is not added.
    assert_eq!(
        words(&f.scan_locale(de, Some("de-CH"))),
        ["Gutachten", "review"]
    );
    // fr: switched off, the default list still applies.
    assert_eq!(
        words(&f.scan_locale("votre avis, a review", Some("fr"))),
        ["review"]
    );
    // A language without a shipped list; the shipped ones stay for others.
    assert_eq!(
        words(&f.scan_locale("sua avaliação", Some("pt-BR"))),
        ["avaliação"]
    );
    assert_eq!(words(&f.scan_locale("una reseña", Some("es"))), ["reseña"]);
    assert_eq!(f.locale_lists()["de-ch"], strings(&["gutachten"]));
}

#[test]
fn bad_entries_and_tags_are_refused_with_the_locale_named() {
    for bad in [
        "",
        "*",
        "!",
        "re*view",
        "review**",
        " review",
        "review!",
        "re view*x",
    ] {
        assert!(Forbidden::new(&strings(&[bad])).is_err(), "{bad:?}");
    }
    for good in [
        "review*",
        "mise à jour",
        "*bewertung*",
        "!avis de passage",
        "評価",
        "d'avis",
    ] {
        assert!(Forbidden::new(&strings(&[good])).is_ok(), "{good:?}");
    }
    let mut per_locale = BTreeMap::new();
    per_locale.insert("de".to_string(), strings(&["gut*achten"]));
    let e = Forbidden::with_locales(&[], &per_locale)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("locale 'de': 'gut*achten' must be a word"),
        "{e}"
    );
    let mut per_locale = BTreeMap::new();
    per_locale.insert("de AT".to_string(), Vec::new());
    let e = Forbidden::with_locales(&[], &per_locale)
        .unwrap_err()
        .to_string();
    assert!(e.contains("locale 'de AT'"), "{e}");
}

#[test]
fn matching_a_single_word_still_works() {
    let f = Forbidden::new(&strings(lint::DEFAULT_FORBIDDEN)).unwrap();
    assert_eq!(f.matching("Reviews"), Some("review*"));
    assert_eq!(f.matching("changing"), Some("changing"));
    assert_eq!(f.matching("r3view"), Some("review*"));
    assert_eq!(f.matching("preview"), None);
    assert_eq!(f.matching("Chang"), None);
}

// ---------------------------------------------------------------------------
// Positions and words refer to the original text

#[test]
fn positions_and_words_are_those_of_the_original_text() {
    let f = shipped();
    let text =
        "Hallo Zoë,\n\nbitte eine Be\u{200B}wer\u{AD}tung und\n  ein r e v i e w und ＲＥＶＩＥＷ.";
    let hits = f.scan_locale(text, Some("de"));
    let found: Vec<(&str, usize, usize)> = hits
        .iter()
        .map(|h| (h.word.as_str(), h.line, h.column))
        .collect();
    assert_eq!(
        found,
        [
            ("Be\u{200B}wer\u{AD}tung", 3, 12),
            ("r e v i e w", 4, 7),
            ("ＲＥＶＩＥＷ", 4, 23),
        ]
    );
    check_positions(text, &hits).unwrap();
    // CRLF line ends and tabs count like any character.
    let hits = f.scan("a\r\nb\tupdated");
    assert_eq!((hits[0].line, hits[0].column), (2, 3));
    // Japanese: the term, where it stands.
    let hits = f.scan_locale("お客様\n高評価をお願いします", Some("ja"));
    assert_eq!(
        (hits[0].word.as_str(), hits[0].line, hits[0].column),
        ("評価", 2, 2)
    );
    // Phrases report the whole phrase.
    let hits = f.scan_locale("Merci de mettre à jour votre note.", Some("fr"));
    assert_eq!(words(&hits), ["mettre à jour"]);
    assert_eq!(hits[0].column, 10);
}

#[test]
fn template_source_is_scanned_in_its_locale() {
    let f = shipped();
    let source = "Hallo {{ order.buyer_name }},\n{# eine Bewertung #}bitte bewerten Sie {{ order.review_url }}";
    let hits = f.scan_template_source_locale(source, Some("de"));
    assert_eq!(words(&hits), ["bewerten"]);
    assert_eq!((hits[0].line, hits[0].column), (2, 27));
    assert!(f.scan_template_source(source).is_empty());
}

#[test]
fn origins_are_found_for_obfuscated_and_locale_words() {
    let f = shipped();
    let rendered = "Hallo Anna, Ihre Produktbewertung zählt. Bitte r e v i e w.";
    let hits = f.scan_locale(rendered, Some("de"));
    assert_eq!(words(&hits), ["Produktbewertung", "r e v i e w"]);
    let template = TemplateHits {
        file: "templates/de/follow_up/body.txt.tera".into(),
        hits: f.scan_template_source_locale("Bitte R-E-V-I-E-W.", Some("de")),
    };
    let fields = [
        ("order.buyer_name".to_string(), "Anna"),
        ("order.product_name".to_string(), "Produktbewertung"),
    ];
    assert_eq!(
        lint::attribute(f, &hits[0], &template, &fields),
        Origin::OrderField("order.product_name".into())
    );
    assert!(matches!(
        lint::attribute(f, &hits[1], &template, &fields),
        Origin::Template {
            line: 1,
            column: 7,
            ..
        }
    ));
}

// ---------------------------------------------------------------------------
// HTML, links

#[test]
fn html_visible_text_joins_inline_tags_and_decodes_references() {
    let f = shipped();
    for html in [
        "<p>Please leave a re<b>view</b>.</p>",
        "<p>Please leave a &#114;eview.</p>",
        "<p>Please leave a &#x72;eview.</p>",
        "<p>Please leave a re&shy;view.</p>",
        "<p>Please leave a re&#8203;view.</p>",
        "<p>Please leave a <span>re</span><span>view</span>.</p>",
        "<p>Please leave a re<!-- x -->view.</p>",
    ] {
        let text = lint::visible_text(html);
        assert_eq!(f.scan(&text).len(), 1, "{html} → {text:?}");
    }
    for html in [
        r#"<p><a href="https://shop.example/review">Tell us how it went</a></p>"#,
        "<p>re<br>view</p>",
        "<p>Open the <i>pre</i>view.</p>",
    ] {
        let text = lint::visible_text(html);
        assert!(f.scan(&text).is_empty(), "{html} → {text:?}");
    }
}

#[test]
fn links_are_not_prose_and_joined_letters_do_not_reach_into_them() {
    let f = shipped();
    for text in [
        "See https://shop.example/reviewing-guide today",
        "See www.reviews.example today",
        "See HTTPS://SHOP.EXAMPLE/UPDATE today",
        "https://shop.example/r/e/v/i/e/w",
        "r e v https://x.example/i/e/w",
        "詳細はhttps://shop.example.jp/reviewをご覧ください",
    ] {
        assert!(f.scan_locale(text, Some("ja")).is_empty(), "{text}");
    }
    assert_eq!(words(&f.scan("https://x.example/ review")), ["review"]);
    assert_eq!(
        words(&f.scan("r e v i e w https://x.example/")),
        ["r e v i e w"]
    );
}

// ---------------------------------------------------------------------------
// Borderline words: decided here, on purpose

#[test]
fn near_misses_stay_clean() {
    let f = shipped();
    let clean = [
        (None, "exchange preview interchangeable unchanged Chang Changi"),
        (None, "the re view from the terrace"),
        (None, "a b c, e.g. U.S.A., i.e. mode 7, 5G, 1 2 3"),
        (None, "updraft, modular, modem, chandelier, revise"),
        (Some("de"), "Wir haben Ihre Bestellung versandt."),
        (Some("de"), "Länder, andere, andern, anders, Wanderung, Bewerber, Auswertung, unverändert"),
        (Some("fr"), "Votre commande est en route."),
        (Some("fr"), "avisé, aviser, un avis de passage, à mon avis, jusqu'à nouvel avis, à jour"),
        (Some("es"), "Su pedido está en camino. Cambio o devolución, cambios y devoluciones, en cambio, a cambio"),
        (Some("es"), "en mi opinión, valor, valores, actualmente, actualidad, reserva, calificado"),
        (Some("it"), "Il tuo ordine è in viaggio. Reso o cambio, cambio taglia, scambio, valuta, recente, aggiunto, modico"),
        (Some("ja"), "ご注文の商品を発送いたしました。プレビュー、テレビ、評判、価格、修理、更に"),
    ];
    for (locale, text) in clean {
        let hits = f.scan_locale(text, locale);
        assert!(hits.is_empty(), "{locale:?} {text}: {hits:?}");
    }
}

#[test]
fn borderline_words_that_are_forbidden() {
    let f = shipped();
    let caught = [
        (Some("de"), "ändern", "änder*"),
        (Some("de"), "Anderung", "anderung*"),
        (Some("de"), "Adressänderung", "*änderung*"),
        (Some("fr"), "votre avis", "avis"),
        (Some("fr"), "mettre a jour", "mettre a jour"),
        (Some("es"), "cambió", "cambió"),
        (Some("es"), "cambiar", "cambia*"),
        (Some("it"), "cambiò", "cambiò"),
        (Some("ja"), "高評価", "評価"),
        (None, "rëview", "review*"),
    ];
    for (locale, text, pattern) in caught {
        let hits = f.scan_locale(text, locale);
        assert_eq!(hits.len(), 1, "{text}: {hits:?}");
        assert_eq!(hits[0].pattern, pattern, "{text}");
    }
}

#[test]
fn a_diacritic_may_be_added_but_never_dropped() {
    let f = shipped();
    // Added: r̈eview, rêview are evasions.
    assert_eq!(f.scan("r\u{308}eview rêview").len(), 2);
    // Dropped: `andern` ("other") is not `ändern`.
    assert!(f.scan_locale("die andern", Some("de")).is_empty());
    assert_eq!(f.scan_locale("a\u{308}ndern", Some("de")).len(), 1);
}

// ---------------------------------------------------------------------------
// Properties

/// Forbidden words, with the locale whose list holds them.
const WORDS: &[(Option<&str>, &str)] = &[
    (None, "review"),
    (None, "reviewed"),
    (None, "Update"),
    (None, "updating"),
    (None, "change"),
    (None, "modify"),
    (None, "modification"),
    (Some("de"), "Bewertung"),
    (Some("de"), "Produktbewertung"),
    (Some("de"), "ändern"),
    (Some("de"), "aktualisieren"),
    (Some("fr"), "avis"),
    (Some("fr"), "évaluation"),
    (Some("fr"), "modifié"),
    (Some("es"), "reseña"),
    (Some("es"), "valoración"),
    (Some("es"), "actualizar"),
    (Some("it"), "recensione"),
    (Some("it"), "aggiornamento"),
    (Some("it"), "valutazione"),
    (Some("ja"), "レビュー"),
    (Some("ja"), "評価"),
    (Some("ja"), "変更"),
];

const HIDDEN: &[char] = &[
    '\u{200B}', '\u{200C}', '\u{200D}', '\u{2060}', '\u{FEFF}', '\u{00AD}', '\u{034F}', '\u{200E}',
    '\u{180E}',
];

const MARKS: &[char] = &['\u{0301}', '\u{0308}', '\u{0323}'];

/// Characters that read as the letter `c`.
fn look_alikes(c: char) -> Vec<char> {
    let mut out = vec![c.to_ascii_uppercase()];
    if c.is_ascii_lowercase() {
        let i = c as u32 - 'a' as u32;
        out.extend(
            [0xFF41, 0x1D41A, 0x1D5BA, 0x24D0]
                .iter()
                .filter_map(|base| char::from_u32(base + i)),
        );
    }
    let extra: &[char] = match c {
        'a' => &['а', 'α', 'ᴀ'],
        'c' => &['с', 'ᴄ'],
        'd' => &['ԁ', 'ᴅ'],
        'e' => &['е', 'ε', 'ᴇ'],
        'g' => &['ɡ', 'ɢ'],
        'i' => &['і', 'ι', 'ı', 'ɪ'],
        'k' => &['к', 'κ', 'ᴋ'],
        'l' => &['ӏ', 'ʟ', 'ł'],
        'm' => &['ᴍ'],
        'n' => &['ɴ'],
        'o' => &['о', 'ο', 'ᴏ', 'ø'],
        'p' => &['р', 'ρ', 'ᴘ'],
        'r' => &['ʀ'],
        's' => &['ѕ', 'ꜱ'],
        't' => &['τ', 'ᴛ'],
        'u' => &['υ', 'ᴜ'],
        'v' => &['ѵ', 'ν', 'ᴠ'],
        'w' => &['ԝ', 'ω', 'ᴡ'],
        'y' => &['у', 'γ', 'ʏ'],
        'z' => &['ᴢ'],
        _ => &[],
    };
    out.extend_from_slice(extra);
    out
}

/// One way to disguise one letter of a word.
#[derive(Debug, Clone)]
enum Disguise {
    Keep,
    LookAlike(usize),
    HiddenAfter(usize),
    MarkAfter(usize),
}

fn disguise(word: &str, plan: &[Disguise]) -> String {
    let mut out = String::new();
    for (i, c) in word.chars().enumerate() {
        let last = i + 1 == word.chars().count();
        let lower = c.to_lowercase().next().unwrap_or(c);
        match plan.get(i).cloned().unwrap_or(Disguise::Keep) {
            Disguise::Keep => out.push(c),
            Disguise::LookAlike(k) => {
                let options = if lower.is_ascii_lowercase() {
                    look_alikes(lower)
                } else {
                    vec![c]
                };
                out.push(options[k % options.len()]);
            }
            Disguise::HiddenAfter(k) => {
                out.push(c);
                if !last {
                    out.push(HIDDEN[k % HIDDEN.len()]);
                }
            }
            Disguise::MarkAfter(k) => {
                out.push(c);
                out.push(MARKS[k % MARKS.len()]);
            }
        }
    }
    out
}

fn disguise_strategy() -> impl Strategy<Value = Disguise> {
    prop_oneof![
        2 => Just(Disguise::Keep),
        2 => any::<usize>().prop_map(Disguise::LookAlike),
        2 => any::<usize>().prop_map(Disguise::HiddenAfter),
        1 => any::<usize>().prop_map(Disguise::MarkAfter),
    ]
}

const BEFORE: &[&str] = &["", "Please leave a ", "Hi Zoë,\n\n", "(", "«", "お客様、"];
const AFTER: &[&str] = &["", " now.", "!", ")\nThanks", "»", "。"];

/// Tricky characters for the never-panics property.
const ALPHABET: &[char] = &[
    'a',
    'e',
    'r',
    'v',
    'i',
    'w',
    'u',
    'p',
    'd',
    't',
    'h',
    's',
    ':',
    '/',
    '.',
    '-',
    ' ',
    '\n',
    '\r',
    '\t',
    '1',
    '3',
    '4',
    '0',
    'é',
    'ä',
    'ß',
    'İ',
    'ı',
    'ﬁ',
    'е',
    'ο',
    'ｒ',
    '𝐞',
    'ⓡ',
    '\u{200B}',
    '\u{00AD}',
    '\u{FEFF}',
    '\u{0301}',
    '\u{0308}',
    '\u{3099}',
    '\u{FF9E}',
    'ﾋ',
    'レ',
    'ビ',
    'ュ',
    'ー',
    '評',
    '価',
    'れ',
    '、',
    '\u{3000}',
    '\u{2028}',
    '\u{85}',
    '´',
    '’',
    '½',
    '㈱',
    '\u{0F73}',
    '\u{1D455}',
    '\u{E0041}',
    '\u{10FFFF}',
    '\0',
    '{',
    '}',
    '%',
    '#',
    '<',
    '>',
    '&',
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn hidden_characters_look_alikes_and_marks_never_hide_a_word(
        (locale, word) in prop::sample::select(WORDS),
        plan in prop::collection::vec(disguise_strategy(), 0..16),
        before in prop::sample::select(BEFORE),
        after in prop::sample::select(AFTER),
    ) {
        let f = shipped();
        let disguised = disguise(word, &plan);
        let text = format!("{before}{disguised}{after}");
        let hits = f.scan_locale(&text, locale);
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().unwrap().chars().count() + 1;
        prop_assert!(
            hits.iter().any(|h| h.word == disguised && (h.line, h.column) == (line, column)),
            "{:?} in {:?}: {:?}", disguised, text, hits
        );
        prop_assert!(check_positions(&text, &hits).is_ok());
    }

    #[test]
    fn letters_joined_by_spaces_or_punctuation_are_found(
        (locale, word) in prop::sample::select(WORDS),
        separators in prop::collection::vec(
            prop::sample::select(&[" ", "-", ".", "_", "/", " . ", "*", "·", "\u{3000}", ", "][..]),
            16,
        ),
        before in prop::sample::select(&["", "Please ", "Hi,\nplease a "][..]),
    ) {
        let f = shipped();
        let letters: Vec<char> = word.chars().collect();
        let japanese = locale == Some("ja");
        let mut spaced = String::new();
        for (i, c) in letters.iter().enumerate() {
            if i > 0 {
                let separator = separators[i % separators.len()];
                // Between kana and Han only spaces and separators no
                // sentence needs are taken out (never `,` or `、`).
                let separator = if japanese && separator.contains(',') { "・" } else { separator };
                spaced.push_str(separator);
            }
            spaced.push(*c);
        }
        let text = format!("{before}{spaced} now.");
        let hits = f.scan_locale(&text, locale);
        // Joined letters have no word boundaries of their own: a hit may
        // take in a single letter before (`a B e w e r t u n g`).
        prop_assert!(hits.iter().any(|h| h.word.ends_with(&spaced)), "{:?}: {:?}", text, hits);
    }

    #[test]
    fn scanning_never_panics_and_hits_point_at_their_words(
        text in prop::collection::vec(prop::sample::select(ALPHABET), 0..120)
            .prop_map(|chars| chars.into_iter().collect::<String>()),
        any_text in any::<String>(),
    ) {
        let f = shipped();
        for text in [&text, &any_text] {
            for locale in [None, Some("de"), Some("fr"), Some("es"), Some("it"), Some("ja"), Some("x-y")] {
                let hits = f.scan_locale(text, locale);
                prop_assert!(check_positions(text, &hits).is_ok(), "{:?}", check_positions(text, &hits));
            }
            let _ = f.scan_template_source(text);
            let _ = lint::visible_text(text);
        }
    }

    #[test]
    fn ordinary_words_never_make_a_hit(
        sentence in prop::collection::vec(prop::sample::select(&[
            "a", "I", "the", "exchange", "preview", "interchangeable", "unchanged", "Chang",
            "order", "shipped", "re", "view", "up", "date", "chan", "ge", "mod", "ify",
            "thanks", "e.g.", "U.S.A.", "5G", "mode", "7", "x", "-", "1", "2", "3",
            "https://x.example/review", "o", "i", "y", "ok",
        ][..]), 0..30),
    ) {
        let f = shipped();
        let text = sentence.join(" ");
        let hits = f.scan(&text);
        prop_assert!(hits.is_empty(), "{:?}: {:?}", text, hits);
    }
}

// ---------------------------------------------------------------------------
// Time

/// A typical 2 KB message: prints the time one scan takes (the best of
/// several batches, so a busy machine does not distort it). In a release
/// build it must stay under 50 µs (20,000 messages a second on one core).
#[test]
fn two_kilobyte_messages_in_the_shipped_languages_scan_clean() {
    // Speed is measured by examples/render_lint (bench/run.sh), not here.
    let built = Forbidden::with_locales(&strings(lint::DEFAULT_FORBIDDEN), &BTreeMap::new());
    assert_eq!(built.as_ref().map_err(ToString::to_string), Ok(shipped()));
    let f = shipped();
    let paragraphs = [
        (None, "Hi Anna,\n\nThank you for shopping with Bright Kitchen. Your Stainless Steel Mug (350 ml) has left us (2026-12-01) and is heading your way. You can follow the parcel here: https://tracking.example.com/parcel/1Z999AA10123456784?lang=en\n\nA couple of tips for when it arrives: keep the packaging until you have checked that everything is there, and have a look at the care card in the box; a few minutes with it will make the product last longer. If anything about the delivery worries you, simply reply to this email. A person, not a robot, reads every message.\n\n"),
        (Some("de"), "Hallo Anna,\n\nvielen Dank für Ihren Einkauf bei Helle Küche. Ihr Edelstahlbecher (350 ml) hat unser Lager am 01.12.2026 verlassen und ist auf dem Weg zu Ihnen. Sendungsverfolgung: https://tracking.example.com/parcel/1Z999?lang=de\n\nEin paar Tipps: Bewahren Sie die Verpackung auf, bis Sie geprüft haben, dass alles vollständig ist. Schauen Sie sich die Pflegekarte im Karton an – ein paar Minuten damit verlängern die Lebensdauer. Wenn Sie Fragen zur Lieferung haben, antworten Sie einfach auf diese E-Mail.\n\n"),
        (Some("ja"), "アンナ様\n\nこの度はブライトキッチンをご利用いただき、誠にありがとうございます。ご注文のステンレスマグ（350ml）を本日発送いたしました。お荷物の状況は以下のリンクからご確認いただけます。https://tracking.example.com/parcel/1Z999\n\n商品が届きましたら、付属のお手入れカードをご覧ください。配送について気になる点がございましたら、このメールにご返信ください。\n\n"),
    ];
    for (locale, paragraph) in paragraphs {
        let mut message = String::new();
        while message.len() < 2048 {
            message.push_str(paragraph);
        }
        let message: String = message
            .char_indices()
            .take_while(|(i, _)| *i < 2048)
            .map(|(_, c)| c)
            .collect();
        assert!(f.scan_locale(&message, locale).is_empty());
    }
}
