//! Real delivery status notifications, feedback reports and automatic
//! replies, read by the bounce parser: the RFCs' examples and samples from
//! sisimai's test suite (tests/data/bounces/, sources in
//! tests/data/SOURCES.md).

use std::path::PathBuf;

use followupd::bounce::{parse, BounceError, Outcome, Report};

fn sample(name: &str) -> Vec<u8> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/bounces");
    std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn all_samples() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/bounces");
    let mut files: Vec<PathBuf> = ["sisimai", "rfc"]
        .iter()
        .flat_map(|d| std::fs::read_dir(dir.join(d)).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p.strip_prefix(&dir).unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect()
}

/// One line a report: what it is and, for each recipient, the address and
/// the outcome, so the expectations below read as a table.
fn summary(raw: &[u8]) -> String {
    match parse(raw) {
        Ok(Report::Delivery(d)) => d
            .recipients
            .iter()
            .map(|r| {
                let status = r.status.map(|s| s.to_string()).unwrap_or("-".into());
                format!("{:?} {} {}", r.outcome, status, r.recipient)
            })
            .collect::<Vec<_>>()
            .join(" | "),
        Ok(Report::Feedback(f)) => format!(
            "feedback {} complaint={} {}",
            f.feedback_type,
            f.is_complaint(),
            f.recipient.as_deref().unwrap_or("-")
        ),
        Ok(Report::AutoReply { .. }) => "auto-reply".into(),
        Err(BounceError::NotAReport) => "not a report".into(),
        Err(e) => format!("error: {e}"),
    }
}

#[test]
fn every_sample_reads_as_what_it_is() {
    let expected = [
        // RFC 3464's own multi-recipient example (as sisimai keeps it) and
        // RFC 5965 appendix B.2.
        ("sisimai/rfc3464-35.eml", "Permanent 5.0.0 kijitora@nyaan.example.com | Delayed 4.0.0 sabatora@cat.example.net | Permanent 5.0.0 mikeneko@neko.example.or.jp"),
        ("rfc/rfc5965-b2.eml", "feedback abuse complaint=true user@example.com"),
        // MTAs and providers.
        ("sisimai/lhost-postfix-01.eml", "Permanent 5.1.1 "),
        ("sisimai/lhost-sendmail-02.eml", "Permanent 5.1.1 userunknown@example.org | Permanent 5.2.1 filtered@example.com"),
        ("sisimai/lhost-outlook-04.eml", "Permanent 5.1.1 sabineko@example.co.jp | Permanent 5.2.2 mikeneko@example.co.jp"),
        ("sisimai/lhost-outlook-06.eml", "Delayed 4.4.7 kijitora@example.com"),
        ("sisimai/lhost-amazonses-05.eml", "Permanent 5.1.1 bounce@simulator.amazonses.com"),
        ("sisimai/lhost-office365-05.eml", "Permanent 5.1.8 kijitora@example.jp"),
        ("sisimai/rhost-franceptt-06.eml", "Temporary 4.0.0 xxxx@orange.fr"),
        ("sisimai/rhost-google-03.eml", "Permanent 5.7.26 kijitora@google.example.com"),
        // Labelled multipart/report with boundaries that do not match:
        // read from the body.
        ("sisimai/rhost-google-02.eml", "Permanent 5.1.1 neko-nyaan@example.org"),
        ("sisimai/rfc3464-04.eml", "Permanent 5.5.0 kijitora@mailx-53.neko.example.edu"),
        // Feedback reports: complaints and the types that are not.
        ("sisimai/arf-14.eml", "feedback abuse complaint=true kijitora@y.example.com"),
        ("sisimai/arf-12.eml", "feedback opt-out complaint=false -"),
        ("sisimai/arf-18.eml", "feedback auth-failure complaint=false kijitora@example.com"),
        // Vacation notices and other automatic replies.
        ("sisimai/rfc3834-01.eml", "auto-reply"),
        ("sisimai/rfc3834-02.eml", "auto-reply"),
        ("sisimai/rfc3834-03.eml", "auto-reply"),
        ("sisimai/arf-26.eml", "auto-reply"),
        // Ordinary mail.
        ("sisimai/is-not-bounce-01.eml", "not a report"),
        ("sisimai/is-not-bounce-02.eml", "not a report"),
    ];
    let mut wrong = Vec::new();
    for (name, want) in expected {
        let got = summary(&sample(name));
        if !got.starts_with(want) {
            wrong.push(format!("{name}:\n  want {want}\n  got  {got}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_returned_message_id_is_found() {
    let Ok(Report::Delivery(d)) = parse(&sample("sisimai/lhost-sendmail-01.eml")) else {
        panic!("not a DSN");
    };
    assert_eq!(
        d.original_message_id.as_deref(),
        Some("E1C50F1B-1C83-4820-BC36-AC6FBFBE8568@example.org")
    );
    assert_eq!(d.recipients[0].smtp_code, Some(550));
    assert!(d.recipients[0]
        .diagnostic
        .as_deref()
        .is_some_and(|t| t.contains("5.1.1")));
    let Ok(Report::Feedback(f)) = parse(&sample("sisimai/arf-14.eml")) else {
        panic!("not ARF");
    };
    assert!(f
        .original_message_id
        .as_deref()
        .is_some_and(|id| id.ends_with("@email.amazonses.com")));
}

/// Every multipart/report sample is read as a report, every sample gives
/// an answer, and no cut of any sample (a truncated pipe, a half-written
/// file) makes the parser panic.
#[test]
fn every_sample_and_every_cut_of_it_gives_an_answer() {
    let samples = all_samples();
    assert!(samples.len() > 60, "{} samples", samples.len());
    let mut reports = 0;
    for (name, raw) in &samples {
        let text = String::from_utf8_lossy(raw).to_ascii_lowercase();
        let labelled = text.contains("report-type=delivery-status")
            || text.contains("report-type=\"delivery-status\"")
            || text.contains("report-type=feedback-report");
        match parse(raw) {
            Ok(Report::Delivery(_) | Report::Feedback(_)) => reports += 1,
            Ok(Report::AutoReply { .. }) | Err(_) => {
                // Two reports in the set carry no report part and no fields
                // in their body (an Office 365 notice and a sanitised copy):
                // they are automatic mail, which is ignored, never acted on.
                assert!(
                    !labelled || matches!(parse(raw), Ok(Report::AutoReply { .. })),
                    "{name}: labelled a report but read as {:?}",
                    parse(raw)
                );
            }
        }
        for cut in [
            0,
            raw.len() / 7,
            raw.len() / 3,
            raw.len() / 2,
            raw.len() - 1,
        ] {
            let _ = parse(&raw[..cut]);
        }
    }
    assert!(reports >= 55, "{reports} reports read");
}

#[test]
fn delays_and_temporary_failures_are_told_apart() {
    let Ok(Report::Delivery(d)) = parse(&sample("sisimai/rfc3464-35.eml")) else {
        panic!("not a DSN");
    };
    let outcomes: Vec<Outcome> = d.recipients.iter().map(|r| r.outcome).collect();
    assert_eq!(
        outcomes,
        [Outcome::Permanent, Outcome::Delayed, Outcome::Permanent]
    );
}
