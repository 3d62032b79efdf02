//! Marketplace policy profiles through the real binary: stage rules at
//! config load, message rules at send time, `lint --explain` and
//! `lint --message --policy`.

mod common;

use common::{Env, BASE_CONFIG};

fn amazon_config(extra: &str) -> String {
    format!(
        "{BASE_CONFIG}\n[marketplaces.amazon-us]\npolicy = \"amazon\"\nfrom = \"Shop <shop@amazon-relay.example>\"\n{extra}\n"
    )
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn amazon_refuses_proactive_stages_unless_told_to_disable_them() {
    let env = Env::new(&amazon_config(""));
    let out = env.run(&["plan"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("marketplaces.amazon-us.policy: stage 'shipment': the amazon policy forbids proactive shipping confirmations"),
        "{err}"
    );

    // A feedback request outside 5-30 days is refused too.
    let env = Env::new(&amazon_config(
        "[policies.amazon]\non_stage_conflict = \"disable\"\n\n[[stages]]\nname = \"review_request\"\nanchor = \"delivered_at\"\nopens_after = \"2d\"\ncloses_after = \"9d\"\n",
    ));
    let out = env.run(&["plan"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("stage 'review_request' is disabled for this marketplace"));
}

#[test]
fn disabled_stages_are_skipped_and_the_feedback_request_goes_alone() {
    let env = Env::new(&amazon_config(
        "[policies.amazon]\non_stage_conflict = \"disable\"\nallowed_domains = [\"amazon.example\"]\n",
    ));
    let csv = "order_id,marketplace,buyer_email,product_name,shipped_at,delivered_at,review_url\n\
A1,amazon-us,a1@buyer.example,Mug,2026-12-01T10:00:00Z,2026-12-02T10:00:00Z,https://www.amazon.example/review/A1\n\
S1,shop,s1@buyer.example,Mug,2026-12-01T10:00:00Z,2026-12-02T10:00:00Z,https://shop.example/fb/S1\n";
    let file = env.write("o.csv", csv);
    assert!(env
        .run(&["import", file.to_str().unwrap()])
        .status
        .success());
    for day in [
        "2026-12-01T12:00:00Z",
        "2026-12-04T12:00:00Z",
        "2026-12-10T12:00:00Z",
    ] {
        env.ok(&["tick", "--now", day]);
    }
    let now = "2026-12-10T12:00:00Z";
    for stage in ["shipment", "follow_up"] {
        let line = env.stage_state(now, "A1", stage);
        assert_eq!(line["state"], "skipped");
        assert_eq!(line["reason"], "disabled by the amazon policy");
    }
    assert_eq!(
        env.stage_state(now, "A1", "review_request")["state"],
        "sent"
    );
    // The shop marketplace keeps the full sequence.
    for stage in ["shipment", "follow_up", "review_request"] {
        assert_eq!(
            env.stage_state(now, "S1", stage)["state"],
            "sent",
            "{stage}"
        );
    }
}

#[test]
fn amazon_message_rules_block_with_the_rule_named() {
    let env = Env::new(&amazon_config(
        "[policies.amazon]\non_stage_conflict = \"disable\"\ndisable = [\"emoji\"]\n",
    ));
    env.write(
        "templates/review_request/body.txt.tera",
        "Hi,\nIf you liked it, 5 stars would make our day 😀\nQuestions? care@shop.example\nhttps://ads.example/deal\n",
    );
    let file = env.write(
        "o.csv",
        "order_id,marketplace,buyer_email,product_name,delivered_at\nA2,amazon-us,a2@buyer.example,Mug,2026-12-01T10:00:00Z\n",
    );
    assert!(env
        .run(&["import", file.to_str().unwrap()])
        .status
        .success());
    env.ok(&["tick", "--now", "2026-12-09T12:00:00Z"]);
    let line = env.stage_state("2026-12-09T12:00:00Z", "A2", "review_request");
    assert_eq!(line["state"], "blocked");
    let reason = line["reason"].as_str().unwrap();
    for expected in [
        "text body:2:18: incentive: asks for ratings or rewards feedback: '5 stars'",
        "text body:3:12: contact: contact details: 'care@shop.example'",
        "text body:4:1: link: link to a domain the order does not need: https://ads.example/deal",
        "order-id: the order id A2 is missing",
    ] {
        assert!(
            reason.contains(expected),
            "missing '{expected}' in {reason}"
        );
    }
    assert!(
        !reason.contains("emoji"),
        "emoji was switched off: {reason}"
    );
    assert!(env.outbox().is_empty());
}

#[test]
fn lint_explains_rules_and_checks_messages_against_a_profile() {
    let env = Env::with_defaults();
    let out = env.ok(&["lint", "--explain", "incentive"]);
    assert!(out.starts_with("incentive\n"), "{out}");
    assert!(out.contains("Why: Amazon forbids"), "{out}");
    let bad = env.run(&["lint", "--explain", "nonsense"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("forbidden-word, incentive, link"));

    let file = env.write(
        "m.txt",
        "Thanks for order 111-222!\nPlease leave positive feedback.\nCall +1 (555) 123-4567 🙂\n",
    );
    let out = env.run(&[
        "lint",
        "--message",
        file.to_str().unwrap(),
        "--policy",
        "amazon",
        "--order-id",
        "111-222",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let f = file.display();
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(
        lines,
        [
            format!(
                "{f}:2:14: incentive: asks for ratings or rewards feedback: 'positive feedback'"
            ),
            format!("{f}:3:6: contact: contact details: '+1 (555) 123-4567'"),
            format!("{f}:3:24: emoji: emoji '🙂'"),
        ]
    );
    // Without a profile only words count.
    let out = env.run(&["lint", "--message", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
}

/// An HTML message is linted as a mail client shows it: a word split by a
/// tag still counts, a word in a link target does not, and words (where
/// they start, in text, alt text or character references), links and
/// images are placed at their line and column in the file.
#[test]
fn lint_reads_an_html_message_as_it_is_shown() {
    let env = Env::with_defaults();
    let html = "<html><body>\n<p>Hi Bo,</p>\n<p>Please re<b>view</b> your order 111-222.</p>\n\
                <p><a href=\"https://px.example/review\">Our shop</a> will update you.</p>\n\
                <img src=\"https://px.example/p.gif\">\n</body></html>\n";
    let file = env.write("m.html", html);
    let f = file.display();
    let lines = |args: &[&str]| -> Vec<String> {
        let out = env.run(&[&["lint", "--message", file.to_str().unwrap()], args].concat());
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(String::from)
            .collect()
    };
    let mut words = vec![
        format!("{f}:4:58: forbidden-word: forbidden word 'update' (matches 'update*')"),
        format!("{f}:3:11: forbidden-word: forbidden word 'review' (matches 'review*')"),
    ];
    words.sort();
    let mut found = lines(&[]);
    found.sort();
    assert_eq!(found, words);

    let mut found = lines(&["--policy", "amazon", "--order-id", "111-222"]);
    found.sort();
    let mut wanted = vec![
        format!(
            "{f}:4:7: link: link to a domain the order does not need: https://px.example/review"
        ),
        format!("{f}:5:1: image: image: <img src=\"https://px.example/p.gif\">"),
    ];
    wanted.extend(words);
    wanted.sort();
    assert_eq!(found, wanted);

    // A message without the order id says so about the whole file.
    let found = lines(&["--policy", "amazon", "--order-id", "999-000"]);
    let missing = format!("{f}:1:1: order-id: the order id 999-000 is missing");
    assert!(found.contains(&missing), "{found:?}");

    // Alt text is shown too, and a word written with character references
    // is placed at the first one.
    let alt = env.write(
        "alt.html",
        "<p><img src=\"cid:logo\" alt=\"Please review\"></p>\n\
         <p>Do review it &amp; café r&eacute;view.</p>\n",
    );
    let out = env.run(&["lint", "--message", alt.to_str().unwrap()]);
    let a = alt.display();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .collect::<Vec<_>>(),
        [
            format!("{a}:1:36: forbidden-word: forbidden word 'review' (matches 'review*')"),
            format!("{a}:2:7: forbidden-word: forbidden word 'review' (matches 'review*')"),
            format!("{a}:2:28: forbidden-word: forbidden word 'réview' (matches 'review*')"),
        ]
    );

    // The same text as plain text: the markup is just characters.
    let plain = env.write("m.txt", html);
    let out = env.run(&["lint", "--message", plain.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("'review'"), "{text}");
}
