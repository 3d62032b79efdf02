//! Scenario 7: Bad files.

use crate::harness::*;

fn order_count(env: &Env) -> i64 {
    Db::open(env).scalar("SELECT COUNT(*) FROM orders")
}

/// One kind of bad CSV row: the reason it must be rejected with, and the
/// row (which may span physical lines).
type BadCsv = (&'static str, fn(usize) -> Vec<u8>);

fn bad_csv_rows() -> Vec<BadCsv> {
    vec![
        ("invalid email address", |i| {
            format!("B{i},not-an-email-{i},Bo,Mug,,2026-12-01,,,,,").into_bytes()
        }),
        ("unknown status 'lost'", |i| {
            format!("B{i},b{i}@x.example,Bo,Mug,,2026-12-01,,lost,,,").into_bytes()
        }),
        ("cannot read 'yesterday' as a time", |i| {
            format!("B{i},b{i}@x.example,Bo,Mug,,yesterday,,,,,").into_bytes()
        }),
        ("unknown time zone", |i| {
            format!("B{i},b{i}@x.example,Bo,Mug,Mars/Base,2026-12-01,,,,,").into_bytes()
        }),
        ("is before shipped_at", |i| {
            format!("B{i},b{i}@x.example,Bo,Mug,,2026-12-05,2026-12-01,,,,").into_bytes()
        }),
        ("missing required field 'buyer_email'", |i| {
            format!("B{i},,Bo,Mug,,2026-12-01,,,,,").into_bytes()
        }),
        ("contains a line break", |i| {
            format!("B{i},b{i}@x.example,\"Ann\nBcc: victim@evil.example\",Mug,,2026-12-01,,,,,")
                .into_bytes()
        }),
        ("contains a line break", |i| {
            format!("B{i},b{i}@x.example,\"Ann\r\nBcc: victim@evil.example\",Mug,,2026-12-01,,,,,")
                .into_bytes()
        }),
        ("expected true or false", |i| {
            format!("B{i},b{i}@x.example,Bo,Mug,,2026-12-01,,,maybe,,").into_bytes()
        }),
        ("is not an http(s) URL", |i| {
            format!("B{i},b{i}@x.example,Bo,Mug,,2026-12-01,,,,,ftp://x.example/{i}").into_bytes()
        }),
        ("expected 11 fields, found 3", |i| {
            format!("B{i},b{i}@x.example,Bo").into_bytes()
        }),
        ("expected 11 fields, found 12", |i| {
            format!("B{i},b{i}@x.example,Bo,Mug,,2026-12-01,,,,,,extra").into_bytes()
        }),
        ("not valid UTF-8", |i| {
            let mut row = format!("B{i},b{i}@x.example,Bo,Caf").into_bytes();
            row.extend_from_slice(b"\xe9 au lait,,2026-12-01,,,,,");
            row
        }),
        ("contains a control character", |i| {
            format!("B{i},b{i}@x.example,A\u{1}B,Mug,,2026-12-01,,,,,").into_bytes()
        }),
        ("missing required field 'order_id'", |i| {
            format!(",b{i}@x.example,Bo,Mug,,2026-12-01,,,,,").into_bytes()
        }),
        ("missing required field 'product_name'", |i| {
            format!("B{i},b{i}@x.example,Bo,,,2026-12-01,,,,,").into_bytes()
        }),
    ]
}

type BadJson = (&'static str, fn(usize) -> Vec<u8>);

fn bad_json_rows() -> Vec<BadJson> {
    vec![
        ("invalid JSON", |i| {
            format!("{{\"order_id\": \"B{i}\", ").into_bytes()
        }),
        ("invalid JSON", |i| format!("[\"B{i}\", 1, 2]").into_bytes()),
        ("invalid JSON", |_| b"null".to_vec()),
        ("invalid JSON", |i| {
            format!("{{\"order_id\":\"B{i}\",\"buyer_email\":\"b{i}@x.example\",\"product_na")
                .into_bytes()
        }),
        ("invalid email address 'not-an-email'", |i| {
            format!("{{\"order_id\":\"B{i}\",\"buyer_email\":\"not-an-email\",\"product_name\":\"Mug\"}}").into_bytes()
        }),
        ("invalid email address '42'", |i| {
            format!("{{\"order_id\":\"B{i}\",\"buyer_email\":42,\"product_name\":\"Mug\"}}")
                .into_bytes()
        }),
        ("missing required field 'order_id'", |i| {
            format!("{{\"buyer_email\":\"b{i}@x.example\",\"product_name\":\"Mug\"}}").into_bytes()
        }),
        ("not valid UTF-8", |i| {
            let mut row = format!(
                "{{\"order_id\":\"B{i}\",\"buyer_email\":\"b{i}@x.example\",\"product_name\":\"Caf"
            )
            .into_bytes();
            row.extend_from_slice(b"\xe9\"}");
            row
        }),
        ("'extra' must be an object", |i| {
            format!("{{\"order_id\":\"B{i}\",\"buyer_email\":\"b{i}@x.example\",\"product_name\":\"Mug\",\"extra\":[1]}}").into_bytes()
        }),
        ("contains a line break", |i| {
            format!("{{\"order_id\":\"B{i}\",\"buyer_email\":\"b{i}@x.example\",\"buyer_name\":\"Eve\\r\\nBcc: v@evil.example\",\"product_name\":\"Mug\"}}").into_bytes()
        }),
        ("contains a control character", |i| {
            format!("{{\"order_id\":\"B{i}\",\"buyer_email\":\"b{i}@x.example\",\"product_name\":\"Mug\\u0000\"}}").into_bytes()
        }),
        ("unknown status", |i| {
            format!("{{\"order_id\":\"B{i}\",\"buyer_email\":\"b{i}@x.example\",\"product_name\":\"Mug\",\"status\":\"lost\"}}").into_bytes()
        }),
    ]
}

/// Writes `good` good rows and `bad` bad ones in a seeded random order, and
/// checks that the import reports every bad one by its line (and reason)
/// and imports every good one.
fn malformed_mix(format: &str, good: usize, bad: usize) -> Value {
    let (mut rng, seed) = rng_for(&format!("s7_malformed_{format}"));
    let env = Env::with_defaults();
    let csv = format == "csv";
    let kinds: Vec<BadCsv> = if csv { bad_csv_rows() } else { bad_json_rows() };
    let mut rows: Vec<Option<usize>> = (0..good).map(|_| None).collect();
    rows.extend((0..bad).map(|i| Some(i % kinds.len())));
    rng.shuffle(&mut rows);
    let mut bytes: Vec<u8> = Vec::new();
    let mut line: u64 = 1;
    if csv {
        bytes.extend_from_slice(CSV_HEADER.as_bytes());
        line = 2;
    }
    let mut expected: BTreeMap<u64, &'static str> = BTreeMap::new();
    for (i, row) in rows.iter().enumerate() {
        if !csv && rng.u8(..) < 8 {
            bytes.extend_from_slice(b"\n"); // blank lines are skipped, but counted
            line += 1;
        }
        let text = match row {
            None if csv => format!("G{i},g{i}@buyer.example,Gail {i},Mug {i},,2026-12-01T10:00:00Z,,,,,").into_bytes(),
            None => format!("{{\"order_id\":\"G{i}\",\"buyer_email\":\"g{i}@buyer.example\",\"product_name\":\"Mug {i}\",\"shipped_at\":\"2026-12-01T10:00:00Z\"}}").into_bytes(),
            Some(k) => {
                expected.insert(line, kinds[*k].0);
                (kinds[*k].1)(i)
            }
        };
        line += 1 + text.iter().filter(|b| **b == b'\n').count() as u64;
        bytes.extend_from_slice(&text);
        bytes.push(b'\n');
    }
    let file = env.path(&format!("orders.{}", if csv { "csv" } else { "jsonl" }));
    std::fs::write(&file, &bytes).unwrap();
    let started = Instant::now();
    let (out, found) = import_file(&env, &file, Duration::from_secs(300));
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", out.describe());
    assert_eq!(
        out.stdout.trim(),
        format!("imported {good}, updated 0, rejected {bad}")
    );
    let missing: Vec<(&u64, &&str)> = expected
        .iter()
        .filter(|(l, _)| !found.contains_key(l))
        .take(10)
        .collect();
    let extra: Vec<(&u64, &String)> = found
        .iter()
        .filter(|(l, _)| !expected.contains_key(l))
        .take(10)
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{format}: rejections by line differ: missing {missing:?}, unexpected {extra:?}"
    );
    let wrong: Vec<String> = expected
        .iter()
        .filter(|(l, want)| !found[*l].contains(*want))
        .take(10)
        .map(|(l, want)| format!("line {l}: want '{want}', got '{}'", found[l]))
        .collect();
    assert!(wrong.is_empty(), "{format}: {wrong:?}");
    assert_eq!(order_count(&env), good as i64, "the good rows are in");
    json!({"format": format, "seed": seed, "good_rows": good, "bad_rows": bad,
           "reported_by_line": found.len(), "kinds": kinds.len(),
           "import_seconds": (took.as_secs_f64() * 10.0).round() / 10.0})
}

#[test]
fn s7_ten_thousand_malformed_rows_are_each_reported_by_line_and_the_good_ones_imported() {
    let started = Instant::now();
    let csv = malformed_mix("csv", size(2_000, 50_000), 10_000);
    let jsonl = malformed_mix("jsonl", size(2_000, 50_000), 10_000);
    report(
        "7 malformed rows",
        started,
        json!({"csv": csv, "jsonl": jsonl}),
    );
}

/// Streams `size` bytes of `fill` into `w`.
fn write_repeated(w: &mut impl Write, fill: u8, size: usize) {
    let chunk = vec![fill; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(chunk.len());
        w.write_all(&chunk[..n]).unwrap();
        left -= n;
    }
}

#[test]
fn s7_a_100_mb_jsonl_line_is_rejected_by_line_in_bounded_memory() {
    let started = Instant::now();
    let env = Env::with_defaults();
    let file = env.path("huge.jsonl");
    let mb = 100 * 1024 * 1024;
    {
        let mut w = std::io::BufWriter::new(File::create(&file).unwrap());
        let good = |id: &str| {
            format!("{{\"order_id\":\"{id}\",\"buyer_email\":\"{id}@buyer.example\",\"product_name\":\"Mug\",\"shipped_at\":\"2026-12-01\"}}\n")
        };
        w.write_all(good("J1").as_bytes()).unwrap();
        // Line 2: a valid object with a 100 MB product name.
        w.write_all(
            b"{\"order_id\":\"JBIG\",\"buyer_email\":\"big@buyer.example\",\"product_name\":\"",
        )
        .unwrap();
        write_repeated(&mut w, b'x', mb);
        w.write_all(b"\"}\n").unwrap();
        w.write_all(good("J3").as_bytes()).unwrap();
        // Line 4: 100 MB of garbage.
        write_repeated(&mut w, b'{', mb);
        w.write_all(b"\n").unwrap();
        // Line 5, without a final line break.
        w.write_all(good("J5").trim_end().as_bytes()).unwrap();
    }
    let (out, found) = import_file(&env, &file, Duration::from_secs(120));
    assert_eq!(out.status.code(), Some(1), "{}", out.describe());
    assert_eq!(out.stdout.trim(), "imported 3, updated 0, rejected 2");
    assert_eq!(
        found.keys().copied().collect::<Vec<_>>(),
        [2, 4],
        "{found:?}"
    );
    assert!(
        found.values().all(|r| r.contains("line longer than")),
        "{found:?}"
    );
    assert!(
        out.peak_kb < 100 * 1024,
        "a 100 MB line must not be read whole: peak {} MiB",
        out.peak_kb / 1024
    );
    report(
        "7 100 MB JSONL line",
        started,
        json!({"line_bytes": mb, "peak_mib": out.peak_kb / 1024, "rejected_lines": [2, 4]}),
    );
}

#[test]
fn s7_a_huge_csv_row_is_rejected_by_line_in_bounded_memory() {
    let started = Instant::now();
    let env = Env::with_defaults();
    let file = env.path("huge.csv");
    // 16 MB by default (four times the JSON Lines limit), 100 MB in full.
    let mb = size(16, 100) * 1024 * 1024;
    {
        let mut w = std::io::BufWriter::new(File::create(&file).unwrap());
        w.write_all(b"order_id,buyer_email,product_name,shipped_at\nC1,c1@buyer.example,Mug,2026-12-01\nCBIG,big@buyer.example,").unwrap();
        write_repeated(&mut w, b'x', mb);
        w.write_all(b",2026-12-01\nC3,c3@buyer.example,Mug,2026-12-01\n")
            .unwrap();
    }
    let (out, found) = import_file(&env, &file, Duration::from_secs(300));
    report(
        "7 huge CSV row",
        started,
        json!({"line_bytes": mb, "peak_mib": out.peak_kb / 1024, "exit": out.status.code(),
               "stdout": out.stdout.trim(), "rejected": found}),
    );
    assert!(
        out.status.code() == Some(1) && found.keys().copied().collect::<Vec<_>>() == [3],
        "a {} MB CSV row must be rejected by its line, as JSON Lines rejects lines over 4 MiB; \
         got {}",
        mb >> 20,
        out.describe()
    );
    assert_eq!(out.stdout.trim(), "imported 2, updated 0, rejected 1");
    assert!(
        out.peak_kb < 64 * 1024,
        "a {} MB row must not be read whole: peak {} MiB",
        mb >> 20,
        out.peak_kb / 1024
    );
}

/// README: "UTF-8 with or without a BOM, LF or CRLF", and "each bad row
/// goes to stderr as FILE:LINE: reason". The line must be the row's own
/// physical line, whatever the line ends.
#[test]
fn s7_a_bom_and_crlf_line_ends_keep_the_reported_lines_right() {
    let env = Env::with_defaults();
    let mut found_by_variant = BTreeMap::new();
    for (name, bom, end) in [
        ("lf", "", "\n"),
        ("bom-lf", "\u{feff}", "\n"),
        ("crlf", "", "\r\n"),
        ("bom-crlf", "\u{feff}", "\r\n"),
    ] {
        // A quoted CRLF inside a field spans two physical lines (3 and 4).
        let text = format!(
            "{bom}{header}{end}G1,g1@buyer.example,Gail,Mug,,2026-12-01,,,,,{end}\
             B3,b3@buyer.example,\"Ann\r\nBcc: victim@evil.example\",Mug,,2026-12-01,,,,,{end}\
             G5,g5@buyer.example,Gus,Mug,,2026-12-01,,,,,{end}\
             B6,not-an-email,Bo,Mug,,2026-12-01,,,,,{end}\
             G7,g7@buyer.example,\"Smith, Jo\",\"Mug \"\"Deluxe\"\"\",,2026-12-01,,,,,{end}",
            header = CSV_HEADER.trim_end()
        );
        let file = env.write(&format!("{name}.csv"), &text);
        let (out, found) = import_file(&env, &file, Duration::from_secs(60));
        assert_eq!(out.status.code(), Some(1), "{name}: {}", out.describe());
        let imported = out.stdout.trim().to_string();
        found_by_variant.insert(
            name,
            (imported, found.keys().copied().collect::<Vec<_>>(), found),
        );
    }
    for (name, (imported, lines, found)) in &found_by_variant {
        assert!(
            imported.ends_with("rejected 2")
                && found
                    .values()
                    .next()
                    .is_some_and(|r| r.contains("line break")),
            "{name}: {imported} {found:?}"
        );
        assert_eq!(
            lines,
            &[3, 6],
            "{name}: bad rows are on lines 3 and 6, reported as {found:?} (all variants: {:?})",
            found_by_variant
                .iter()
                .map(|(n, v)| (n, v.1.clone()))
                .collect::<Vec<_>>()
        );
    }
}

#[test]
fn s7_non_utf8_and_truncated_files_are_reported_by_line() {
    let started = Instant::now();
    let env = Env::with_defaults();
    // A Latin-1 file: every row with an accented letter is rejected by its
    // line; the plain rows go in.
    let file = env.path("latin1.csv");
    let mut bytes = CSV_HEADER.as_bytes().to_vec();
    bytes.extend_from_slice(b"L2,l2@buyer.example,Ren\xe9,Caf\xe9,,2026-12-01,,,,,\n");
    bytes.extend_from_slice(b"L3,l3@buyer.example,Rene,Cafe,,2026-12-01,,,,,\n");
    bytes.extend_from_slice(b"L4,l4@buyer.example,Zo\xeb,Mug,,2026-12-01,,,,,\n");
    std::fs::write(&file, &bytes).unwrap();
    let (out, found) = import_file(&env, &file, Duration::from_secs(60));
    assert_eq!(
        out.stdout.trim(),
        "imported 1, updated 0, rejected 2",
        "{}",
        out.describe()
    );
    assert_eq!(
        found.keys().copied().collect::<Vec<_>>(),
        [2, 4],
        "{found:?}"
    );
    assert!(
        found.values().all(|r| r.contains("not valid UTF-8")),
        "{found:?}"
    );

    // A header that is not UTF-8: the file cannot be read at all (exit 2,
    // saying why), and nothing of it goes in.
    let file = env.path("badheader.csv");
    std::fs::write(
        &file,
        b"order_id,buyer_email,product_name,Bemerkung \xfc\nH1,h1@buyer.example,Mug,x\n",
    )
    .unwrap();
    let out = followupd(
        &env,
        &["import", file.to_str().unwrap()],
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(2), "{}", out.describe());
    assert!(out.stderr.contains("not valid UTF-8"), "{}", out.describe());

    // JSON Lines: a truncated last line (no line break), a BOM, CRLF.
    let file = env.path("truncated.jsonl");
    std::fs::write(
        &file,
        "\u{feff}{\"order_id\":\"T1\",\"buyer_email\":\"t1@buyer.example\",\"product_name\":\"Mug\"}\r\n\
         {\"order_id\":\"T2\",\"buyer_email\":\"t2@buyer.example\",\"product_name\":\"Mug\"}\r\n\
         {\"order_id\":\"T3\",\"buyer_email\":\"t3@buyer.ex",
    )
    .unwrap();
    let (out, found) = import_file(&env, &file, Duration::from_secs(60));
    assert_eq!(
        out.stdout.trim(),
        "imported 2, updated 0, rejected 1",
        "{}",
        out.describe()
    );
    assert_eq!(found.keys().copied().collect::<Vec<_>>(), [3], "{found:?}");
    assert!(found[&3].contains("invalid JSON"), "{found:?}");

    // CSV truncated inside a quoted field.
    let file = env.path("truncated.csv");
    std::fs::write(
        &file,
        format!(
            "{CSV_HEADER}U2,u2@buyer.example,Uma,Mug,,2026-12-01,,,,,\nU3,u3@buyer.example,\"Un"
        ),
    )
    .unwrap();
    let (out, found) = import_file(&env, &file, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(1), "{}", out.describe());
    assert_eq!(
        found.keys().copied().collect::<Vec<_>>(),
        [3],
        "{}",
        out.describe()
    );
    assert_eq!(order_count(&env), 1 + 2 + 1);
    report(
        "7 non-UTF-8 and truncated files",
        started,
        json!({"files": 4}),
    );
}

#[test]
fn s7_line_breaks_nul_and_100_kb_fields_are_refused_or_sent_intact() {
    let started = Instant::now();
    let env = Env::new(&format!(
        "{}\n[sending_hours]\nstart = \"00:00\"\nend = \"00:00\"\n",
        common::BASE_CONFIG
    ));
    let big = "Lorem ipsum dolor sit amet ".repeat(100 * 1024 / 27);
    let rows = [
        json!({"order_id":"N1","buyer_email":"n1@buyer.example","product_name":big,"shipped_at":"-1h"}),
        json!({"order_id":"N2","buyer_email":"n2@buyer.example","buyer_name":big,"product_name":"Mug","shipped_at":"-1h"}),
        json!({"order_id":"N3","buyer_email":"n3@buyer.example","product_name":"Mug","shipped_at":"-1h","note":big}),
        // Free-form extra columns may hold anything; they never reach a header.
        json!({"order_id":"N4","buyer_email":"n4@buyer.example","product_name":"Mug","shipped_at":"-1h","note":"a\u{0}b\r\nBcc: victim@evil.example"}),
        json!({"order_id":"N5","buyer_email":"n5@buyer.example","product_name":"Mug\u{0}","shipped_at":"-1h"}),
        json!({"order_id":"N6","buyer_email":"n6@buyer.example","product_name":"Mug","buyer_name":"Ann\rBo","shipped_at":"-1h"}),
        json!({"order_id":"N7","buyer_email":"n7@buyer.example","product_name":"Mug","buyer_name":"Ann\nBcc: victim@evil.example","shipped_at":"-1h"}),
        json!({"order_id":"N8\r\nX","buyer_email":"n8@buyer.example","product_name":"Mug","shipped_at":"-1h"}),
    ];
    let text: String = rows.iter().map(|r| format!("{r}\n")).collect();
    let file = env.write("fields.jsonl", &text);
    let (out, found) = import_file(&env, &file, Duration::from_secs(60));
    assert_eq!(
        out.stdout.trim(),
        "imported 4, updated 0, rejected 4",
        "{}",
        out.describe()
    );
    assert_eq!(
        found.keys().copied().collect::<Vec<_>>(),
        [5, 6, 7, 8],
        "{found:?}"
    );
    assert!(found[&5].contains("control character"), "{found:?}");
    assert!(found[&6].contains("line break") && found[&7].contains("line break"));
    tick(&env, Utc::now());
    let outbox = env.outbox();
    assert_eq!(outbox.len(), 4, "N1..N4 sent");
    for (name, raw) in &outbox {
        let head = raw.split("\r\n\r\n").next().unwrap();
        assert!(
            !head
                .lines()
                .any(|l| l.to_ascii_lowercase().starts_with("bcc:")),
            "{name}: {head}"
        );
    }
    let n1 = &outbox.iter().find(|(n, _)| n.contains(".N1@")).unwrap().1;
    let subject = decoded_header(n1, "Subject");
    assert_eq!(
        subject,
        format!("Your {} is on its way", big.trim()),
        "the 100 KB subject arrives whole"
    );
    // Support staff can still read the send log, as a table and as JSON.
    let json_logs = followupd(&env, &["logs", "--json"], Duration::from_secs(60));
    assert!(json_logs.status.success(), "{}", json_logs.describe());
    let table = followupd(&env, &["logs"], Duration::from_secs(60));
    report(
        "7 control characters and 100 KB fields",
        started,
        json!({"rows": rows.len(), "rejected": 4, "sent": outbox.len(),
               "logs_table_exit": table.status.code()}),
    );
    assert!(
        table.status.success(),
        "`followupd logs` fails once a subject is 100 KB long: {}",
        table.describe()
    );
}

fn idn_and_quoted(addresses: &[&str]) -> (Env, SmtpServer, Out, Vec<Value>) {
    let server = SmtpServer::start(&[]);
    let env = Env::new(&smtp_config(server.port, &[], "", "", ""));
    let text: String = addresses
        .iter()
        .enumerate()
        .map(|(i, a)| {
            format!(
                "{}\n",
                json!({"order_id": format!("E{}", i + 1), "buyer_email": a,
                       "product_name": "Mug", "shipped_at": "2026-12-01T09:00:00Z"})
            )
        })
        .collect();
    let file = env.write("emails.jsonl", &text);
    let out = followupd(
        &env,
        &["import", file.to_str().unwrap()],
        Duration::from_secs(60),
    );
    tick(&env, at(T0));
    let received = server.received();
    (env, server, out, received)
}

#[test]
fn s7_idn_domains_and_utf8_local_parts_reach_the_server() {
    let started = Instant::now();
    let addresses = [
        "ann@bücher.example",
        "josé@example.com",
        "user+tag@xn--bcher-kva.example",
        "o'brien@example.com",
        "用户@例子.广告",
    ];
    let (env, server, out, received) = idn_and_quoted(&addresses);
    assert!(out.status.success(), "{}", out.describe());
    let got: BTreeSet<String> = received
        .iter()
        .map(|r| r["rcpt_tos"][0].as_str().unwrap().to_string())
        .collect();
    let want: BTreeSet<String> = addresses.iter().map(|a| a.to_string()).collect();
    assert_eq!(got, want);
    check_invariants(
        &env,
        &[&server],
        &Expect {
            now: at(T0),
            resend_stages: &[],
            unattributed: Some(0),
        },
    );
    report(
        "7 IDN addresses",
        started,
        json!({"addresses": addresses.len(), "sent": got.len()}),
    );
}

/// README: "IDN domains and quoted local parts are fine". An address the
/// import takes must be deliverable (or the import must refuse it, by line).
#[test]
fn s7_quoted_local_parts_are_delivered_or_refused_at_import() {
    let started = Instant::now();
    let addresses = [
        "\"quoted\"@example.com",
        "\"john doe\"@example.com",
        "\"a@b\"@example.com",
        "\"very.(),:;<>[]\\\".unusual\"@example.com",
    ];
    let (env, server, out, received) = idn_and_quoted(&addresses);
    let file = env.path("emails.jsonl");
    let refused = rejections(&out.stderr, &file);
    let got: Vec<String> = received
        .iter()
        .map(|r| r["rcpt_tos"][0].as_str().unwrap().to_string())
        .collect();
    let db = Db::open(&env);
    let states = db.strings(
        "SELECT order_id, state || ': ' || COALESCE(reason, '') FROM stages WHERE stage = 'shipment' ORDER BY order_id",
    );
    drop(db);
    let mut problems = Vec::new();
    for (i, address) in addresses.iter().enumerate() {
        let line = i as u64 + 1;
        if refused.contains_key(&line) {
            continue;
        }
        // The quotes may go where they are not needed ("quoted"@ = quoted@).
        let unquoted = address.replacen('"', "", 2);
        let plain = !unquoted
            .split('@')
            .next()
            .unwrap()
            .contains([' ', '@', '(', '"', '\\']);
        let delivered = got
            .iter()
            .any(|g| g == address || (plain && *g == unquoted));
        if !delivered {
            let state = states
                .iter()
                .find(|(id, _)| *id == format!("E{line}"))
                .map(|(_, s)| s.as_str());
            problems.push(format!("{address}: imported, then {state:?}"));
        }
    }
    report(
        "7 quoted local parts",
        started,
        json!({"addresses": addresses.len(), "refused_at_import": refused.len(),
               "delivered": got, "not_delivered": problems}),
    );
    assert!(
        problems.is_empty(),
        "addresses the import accepted but nobody can deliver:\n{}",
        problems.join("\n")
    );
    check_invariants(
        &env,
        &[&server],
        &Expect {
            now: at(T0),
            resend_stages: &[],
            unattributed: Some(0),
        },
    );
}

/// `-3d` means "that long before the import"; an absurd span must be a
/// rejected row, not a crash of the import (or of the service that reads
/// the inbox, which would then crash on the same file at every restart).
#[test]
fn s7_an_out_of_range_relative_time_is_a_rejection_not_a_crash() {
    let started = Instant::now();
    let env = Env::new(&format!(
        "{}\n[sending_hours]\nstart = \"00:00\"\nend = \"00:00\"\n\n[import]\ninbox = \"inbox\"\n",
        common::BASE_CONFIG
    ));
    let text = format!(
        "{ORDER_HEADER}{}{}{}",
        order_row("R1", "-1h", ""),
        order_row("R2", "-300000y", ""),
        order_row("R3", "-5000000000d", "")
    );
    let out = import_text(&env, "relative.csv", &text);
    let file = env.path("relative.csv");
    let found = rejections(&out.stderr, &file);
    let cli_ok =
        out.status.code() == Some(1) && found.keys().copied().collect::<Vec<_>>() == [3, 4];

    env.write(
        "inbox/.relative.csv.tmp",
        &text
            .replace("R1", "Q1")
            .replace("R2", "Q2")
            .replace("R3", "Q3"),
    );
    std::fs::rename(
        env.path("inbox/.relative.csv.tmp"),
        env.path("inbox/relative.csv"),
    )
    .unwrap();
    let mut daemon = Daemon::start(&env, "inbox", &[]);
    let filed = eventually(Duration::from_secs(10), || {
        env.path("inbox/rejected/relative.csv.errors").exists() || !daemon.alive()
    });
    std::thread::sleep(Duration::from_millis(500));
    let alive = daemon.alive();
    let daemon_log = daemon.log_tail();
    drop(daemon);
    report(
        "7 out-of-range relative time",
        started,
        json!({"cli_exit": out.status.code(), "cli_rejected_lines": found.keys().collect::<Vec<_>>(),
               "daemon_alive": alive, "inbox_file_filed": filed && alive}),
    );
    assert!(
        cli_ok,
        "import of `-300000y` / `-5000000000d`: expected rows 3 and 4 rejected, got {}",
        out.describe()
    );
    assert!(
        alive && filed,
        "the service died on an inbox file with an out-of-range relative time (it would \
         crash again on every restart); log:\n{daemon_log}"
    );
}

/// The importer takes dates up to the year 262142; a window measured from
/// such a date must not crash the scheduler (and with it every pass, for
/// every order) when a stage's window is long.
#[test]
fn s7_a_far_future_date_does_not_stop_the_other_orders() {
    let env = Env::new(&format!(
        "{}\n[sending_hours]\nstart = \"00:00\"\nend = \"00:00\"\n\n\
         [[stages]]\nname = \"shipment\"\nanchor = \"shipped_at\"\nopens_after = \"0s\"\ncloses_after = \"400d\"\n",
        common::BASE_CONFIG
    ));
    let out = import_text(
        &env,
        "far.csv",
        &format!(
            "{ORDER_HEADER}{}{}",
            order_row("FAR", "+262142-12-31", ""),
            order_row("NEAR", "-1h", "")
        ),
    );
    let far_refused = out.status.code() == Some(1);
    let t = followupd(&env, &["tick"], Duration::from_secs(60));
    assert!(
        t.status.success(),
        "tick with an order dated +262142-12-31 (accepted by the import: {}): {}",
        !far_refused,
        t.describe()
    );
    assert!(
        env.outbox().iter().any(|(n, _)| n.contains(".NEAR@")),
        "the ordinary order was not sent"
    );
}
