//! The `incentive` rule: asking for positive ratings or rewarding feedback.

use super::Policy;

/// The default incentive phrases. `...` stands for up to 80 characters of
/// anything, so `free ... in exchange` catches "a free sample in exchange".
pub const DEFAULT_INCENTIVE_PHRASES: &[&str] = &[
    "5 stars",
    "5-star",
    "five stars",
    "five-star",
    "positive feedback",
    "positive rating",
    "good rating",
    "good feedback",
    "excellent feedback",
    "free ... in exchange",
    "in exchange for your feedback",
    "in exchange for your honest",
    "refund ... for your feedback",
    "discount ... for your feedback",
    "gift card",
    "coupon ... feedback",
];

/// The first match of each incentive phrase in a text, with its byte offset
/// (in the lower-cased text, which has the same offsets as the text unless
/// lower-casing changed a character's length).
pub(super) fn incentives(policy: &Policy, text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    // Lower-casing keeps byte offsets for ASCII phrases; other text is
    // matched on its own lower-cased form and located approximately.
    let lower = text.to_lowercase();
    let same_offsets = lower.len() == text.len();
    for phrase in &policy.phrases {
        let pieces: Vec<String> = phrase
            .to_lowercase()
            .split("...")
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect();
        let Some(first) = pieces.first() else {
            continue;
        };
        let mut from = 0;
        while let Some(start) = lower[from..].find(first.as_str()).map(|i| i + from) {
            let mut end = start + first.len();
            let mut matched = true;
            for piece in &pieces[1..] {
                let window_end = (end + 80 + piece.len()).min(lower.len());
                let window_end = (window_end..=lower.len())
                    .find(|i| lower.is_char_boundary(*i))
                    .unwrap_or(lower.len());
                match lower[end..window_end].find(piece.as_str()) {
                    Some(i) => end = end + i + piece.len(),
                    None => {
                        matched = false;
                        break;
                    }
                }
            }
            if matched {
                let (at, shown) = if same_offsets {
                    (start, &text[start..end])
                } else {
                    // Located approximately: lower-casing moved the offsets.
                    let mut at = start.min(text.len());
                    while !text.is_char_boundary(at) {
                        at -= 1;
                    }
                    (at, &lower[start..end])
                };
                found.push((at, shown.to_string()));
                break;
            }
            from = start + first.len();
        }
    }
    found
}
