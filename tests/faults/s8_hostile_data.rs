//! Scenario 8: Hostile data in templates.

use crate::harness::*;

/// The decoded text/plain and text/html parts of a raw message.
fn mime_parts(raw: &str) -> Vec<(String, String)> {
    let mut parts = Vec::new();
    let boundary = raw
        .find("boundary=\"")
        .map(|i| &raw[i + 10..])
        .and_then(|rest| rest.find('"').map(|j| rest[..j].to_string()));
    let chunks: Vec<&str> = match &boundary {
        Some(b) => raw.split(&format!("--{b}")).skip(1).collect(),
        None => vec![raw],
    };
    for chunk in chunks {
        let Some((head, body)) = chunk.split_once("\r\n\r\n") else {
            continue;
        };
        let head_lower = head.to_ascii_lowercase();
        let kind = if head_lower.contains("text/html") {
            "html"
        } else if head_lower.contains("text/plain") {
            "text"
        } else {
            continue;
        };
        let bytes = if head_lower.contains("quoted-printable") {
            qp_decode(body)
        } else if head_lower.contains("base64") {
            base64_decode(body)
        } else {
            body.as_bytes().to_vec()
        };
        parts.push((
            kind.to_string(),
            String::from_utf8_lossy(&bytes).replace("\r\n", "\n"),
        ));
    }
    parts
}

#[test]
fn s8_hostile_order_data_stays_data_escaped_and_out_of_the_headers() {
    let started = Instant::now();
    let server = SmtpServer::start(&[]);
    let env = Env::new(&smtp_config(server.port, &[], "", "", ""));
    // Templates that put free-form order data into the subject and next to
    // lone dots in both bodies.
    env.write(
        "templates/shipment/subject.txt.tera",
        "Your {{ order.product_name }} is on its way{% if order.extra.tag %} ({{ order.extra.tag }}){% endif %}\n",
    );
    let text = std::fs::read_to_string(env.path("templates/shipment/body.txt.tera")).unwrap();
    env.write(
        "templates/shipment/body.txt.tera",
        &format!(".\n{text}.\n{{% if order.extra.note %}}{{{{ order.extra.note }}}}{{% endif %}}\n..\n.\n"),
    );
    let html = std::fs::read_to_string(env.path("templates/shipment/body.html.tera")).unwrap();
    env.write(
        "templates/shipment/body.html.tera",
        &html.replace(
            "</body>",
            "<p>{% if order.extra.note %}{{ order.extra.note }}{% endif %}</p>\n.\n</body>",
        ),
    );
    let evil_url = "https://shop.example/t?a=\"><script>alert(4)</script>";
    let rows = [
        json!({"order_id":"H1","buyer_email":"h1@buyer.example","buyer_name":"{{ 7*7 }} {% include \"/etc/passwd\" %}",
               "product_name":"{{ 7*7 }} Mug {% raw %}x{% endraw %}","note":"{{ 7*7 }} {{ shop.name }} {% for i in [1] %}loop{% endfor %}"}),
        json!({"order_id":"H2","buyer_email":"h2@buyer.example","buyer_name":"<b>Bo</b><script>alert(2)</script>",
               "product_name":"<script>alert(1)</script> Mug","note":"<img src=x onerror=alert(3)>",
               "tracking_url":evil_url,"order_url":evil_url}),
        json!({"order_id":"H3","buyer_email":"h3@buyer.example","buyer_name":"Eve\u{2028}Bcc: victim@evil.example",
               "product_name":"Mug\u{2029}Bcc: victim@evil.example"}),
        json!({"order_id":"H4","buyer_email":"h4@buyer.example","buyer_name":"=?utf-8?q?Eve=0D=0ABcc=3A_victim=40evil=2Eexample?=",
               "product_name":"Mug =?utf-8?b?DQpCY2M6IHZpY3RpbUBldmlsLmV4YW1wbGU=?="}),
        json!({"order_id":"H5","buyer_email":"h5@buyer.example","buyer_name":"Dot","product_name":"Mug",
               "note":"line one\r\n.\r\nline three\n.\n..\n."}),
        json!({"order_id":"H6","buyer_email":"h6@buyer.example","buyer_name":"Tag","product_name":"Mug",
               "tag":"x\r\nBcc: victim@evil.example"}),
        json!({"order_id":"H7","buyer_email":"h7@buyer.example","buyer_name":"Eve\u{85}Bcc: victim@evil.example","product_name":"Mug"}),
    ];
    let text: String = rows
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r["shipped_at"] = json!("2026-12-01T09:00:00Z");
            format!("{r}\n")
        })
        .collect();
    let file = env.write("hostile.jsonl", &text);
    let (out, found) = import_file(&env, &file, Duration::from_secs(60));
    assert_eq!(
        found.keys().copied().collect::<Vec<_>>(),
        [7],
        "{}",
        out.describe()
    );
    assert!(found[&7].contains("control character"), "{found:?}");
    tick(&env, at(T0));

    let received = server.received();
    let by_order: HashMap<String, String> = received
        .iter()
        .map(|r| {
            let n = r["n"].as_u64().unwrap();
            let to = r["rcpt_tos"].as_array().unwrap();
            assert_eq!(to.len(), 1, "one recipient only: {r}");
            let order = to[0]
                .as_str()
                .unwrap()
                .split('@')
                .next()
                .unwrap()
                .to_uppercase();
            (order, server.message(n))
        })
        .collect();
    let mut ids: Vec<&String> = by_order.keys().collect();
    ids.sort();
    assert_eq!(
        ids,
        ["H1", "H2", "H3", "H4", "H5"],
        "H6 blocked, H7 refused"
    );
    for (id, raw) in &by_order {
        let head = raw.split("\r\n\r\n").next().unwrap();
        for line in head.split("\r\n") {
            let lower = line.to_ascii_lowercase();
            assert!(
                !lower.starts_with("bcc:") && !lower.starts_with("cc:"),
                "{id}: a header was added: {line}\n{head}"
            );
            assert!(line.is_ascii(), "{id}: raw 8-bit header: {line:?}");
        }
    }
    let part = |id: &str, kind: &str| -> String {
        mime_parts(&by_order[id])
            .into_iter()
            .find(|(k, _)| k == kind)
            .map(|(_, b)| b)
            .unwrap_or_else(|| panic!("{id}: no {kind} part"))
    };

    // Template syntax in order data arrives as written, never evaluated.
    let h1 = &by_order["H1"];
    assert_eq!(
        decoded_header(h1, "Subject"),
        "Your {{ 7*7 }} Mug {% raw %}x{% endraw %} is on its way"
    );
    let h1_text = part("H1", "text");
    assert!(
        h1_text.contains("{{ 7*7 }} {{ shop.name }} {% for i in [1] %}loop{% endfor %}"),
        "{h1_text}"
    );
    assert!(
        !h1_text.contains("49") && !h1_text.contains("root:"),
        "{h1_text}"
    );
    assert!(decoded_header(h1, "To").contains("{{ 7*7 }} {% include \"/etc/passwd\" %}"));

    // Markup in any field is escaped in HTML, URL included.
    let h2_html = part("H2", "html");
    let lower = h2_html.to_lowercase();
    assert!(
        !lower.contains("<script") && !lower.contains("<img") && !lower.contains("<b>bo"),
        "unescaped markup in the HTML part:\n{h2_html}"
    );
    assert!(lower.contains("&lt;script&gt;alert(1)"), "{h2_html}");
    assert!(
        !h2_html.contains("\"><"),
        "the link's attribute was broken out of:\n{h2_html}"
    );
    assert!(part("H2", "text").contains("<script>alert(1)</script> Mug"));

    // Line separators and encoded-word look-alikes stay inside the header
    // they belong to.
    assert!(decoded_header(&by_order["H3"], "To").contains("Eve\u{2028}Bcc: victim@evil.example"));
    assert_eq!(
        decoded_header(&by_order["H3"], "Subject"),
        "Your Mug\u{2029}Bcc: victim@evil.example is on its way"
    );

    // Lone dots, from the template and from the data, arrive intact.
    let h5 = part("H5", "text");
    assert!(h5.starts_with(".\n"), "{h5:?}");
    assert!(
        h5.contains("\n.\nline one\n.\nline three\n.\n..\n.\n..\n.\n"),
        "{h5:?}"
    );
    assert!(part("H5", "html").contains("\n.\n"));

    // A line break from free-form data in the subject blocks the message.
    let line = plan(&env, at(T0))
        .into_iter()
        .find(|l| l["order_id"] == "H6" && l["stage"] == "shipment")
        .unwrap();
    assert_eq!(line["state"], "blocked", "{line}");
    assert!(
        line["reason"].as_str().unwrap().contains("single line"),
        "{line}"
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
    report(
        "8 hostile data",
        started,
        json!({"orders": rows.len(), "sent": by_order.len(), "blocked": 1, "refused_at_import": 1,
               "headers_added": 0}),
    );
}
