//! The shipped forbidden lists, one per language, and the grammar of a list
//! entry (`review*`, `*bewertung*`, `mettre à jour`, `!avis de passage`).

use super::LintError;

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
pub(crate) fn canonical_locale(locale: &str) -> String {
    locale.trim().replace('_', "-").to_lowercase()
}

pub(super) fn to_strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// A list entry split into its flags and its text, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct EntrySpec<'a> {
    /// `!…`: an allowed phrase.
    pub allow: bool,
    /// `*…`: any beginning.
    pub infix: bool,
    /// `…*`: any ending.
    pub prefix: bool,
    /// The word or phrase without its flags.
    pub stem: &'a str,
}

impl<'a> EntrySpec<'a> {
    pub fn parse(pattern: &'a str) -> Result<Self, LintError> {
        let invalid = || LintError::InvalidEntry {
            pattern: pattern.to_string(),
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
        Ok(Self {
            allow,
            infix,
            prefix,
            stem,
        })
    }
}
