//! Importing the exports sellers really have, as they download them: real
//! public samples of Shopify's orders CSV, Amazon's order reports and
//! WooCommerce's REST orders (tests/data/imports, see tests/data/SOURCES.md),
//! and custom mappings with the same powers.

mod common;

use common::{repo, Env};

fn sample(name: &str) -> String {
    repo()
        .join("tests/data/imports")
        .join(name)
        .to_string_lossy()
        .to_string()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).to_string()
}

/// The plan line of one order's stage.
fn plan_line(env: &Env, now: &str, order: &str, stage: &str) -> serde_json::Value {
    env.stage_state(now, order, stage)
}

on_both_backends! {
    fn a_shopify_export_imports_one_order_per_name_with_every_line_item() {
        let env = Env::with_defaults();
        let file = sample("shopify-orders-export.csv");
        // 101 rows, 50 orders.
        let out = env.ok(&["import", "--from", "shopify", &file]);
        assert_eq!(out.trim(), "imported 50, updated 0, rejected 0");
        let out = env.ok(&["import", "--from", "shopify", &file]);
        assert_eq!(out.trim(), "imported 0, updated 50, rejected 0");

        let now = "2021-05-15T10:00:00Z";
        // #13519: paid and fulfilled on 2021-05-13 14:01:07 +0200.
        let shipped = plan_line(&env, now, "#13519", "shipment");
        assert_eq!(shipped["window"]["opens"], "2021-05-13T12:01:07Z", "{shipped}");
        // #13522: pending and unfulfilled, three items: nothing has shipped.
        let pending = plan_line(&env, now, "#13522", "shipment");
        assert!(pending["window"].is_null(), "{pending}");
    }
}

#[test]
fn shopify_state_reads_financial_and_fulfillment_status_together() {
    let env = Env::with_defaults();
    let header = "Name,Email,Financial Status,Fulfillment Status,Fulfilled at,Cancelled at,Lineitem name,Shipping Name";
    let csv = format!(
        "{header}\n\
         #1,a@example.com,paid,unfulfilled,,,Lamp,Ann Lee\n\
         #2,b@example.com,paid,fulfilled,2026-01-05 10:00:00 +0100,,Lamp,Bo Ek\n\
         #3,c@example.com,partially_refunded,fulfilled,2026-01-05 10:00:00 +0100,,Lamp,Cy Oh\n\
         #4,d@example.com,voided,unfulfilled,,,Lamp,Di Wu\n\
         #5,e@example.com,refunded,fulfilled,2026-01-05 10:00:00 +0100,,Lamp,Ed Yu\n"
    );
    let file = env.write("orders_export.csv", &csv);
    let out = env.ok(&["import", "--from", "shopify", file.to_str().unwrap()]);
    assert_eq!(out.trim(), "imported 5, updated 0, rejected 0");
    let now = "2026-01-20T12:00:00Z";
    // Paid but not fulfilled: not told it has shipped.
    assert!(plan_line(&env, now, "#1", "shipment")["window"].is_null());
    assert!(!plan_line(&env, now, "#2", "shipment")["window"].is_null());
    // A partial refund skips the review request only.
    let follow_up = plan_line(&env, now, "#3", "follow_up");
    assert_ne!(follow_up["state"], "will_skip", "{follow_up}");
    let review = plan_line(&env, now, "#3", "review_request");
    assert!(
        review["reason"]
            .as_str()
            .unwrap()
            .contains("partially refunded"),
        "{review}"
    );
    for order in ["#4", "#5"] {
        let line = plan_line(&env, now, order, "follow_up");
        assert!(
            line["reason"].as_str().unwrap().contains("order"),
            "{order}: {line}"
        );
        assert_eq!(line["state"], "will_skip", "{order}: {line}");
    }
}

#[test]
fn an_amazon_order_report_imports_and_the_all_orders_report_is_refused() {
    let env = Env::with_defaults();
    let out = env.ok(&[
        "import",
        "--from",
        "amazon",
        &sample("amazon-order-report.txt"),
    ]);
    // Six rows, four orders (one with two items, one with two rows).
    assert_eq!(out.trim(), "imported 4, updated 0, rejected 0");
    let lines = env.plan("2009-01-10T00:00:00Z");
    assert!(
        lines.iter().all(|l| l["marketplace"] == "amazon"),
        "{lines:?}"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l["order_id"] == "234-5678901-2345678")
            .count(),
        3,
        "one order, three stages"
    );

    let out = env.run(&[
        "import",
        "--from",
        "amazon",
        &sample("amazon-all-orders.txt"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("All Orders report has no buyer-email column"),
        "{err}"
    );
    assert!(err.contains("Order Report"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one message: {err}");
}

#[test]
fn woocommerce_rest_orders_import_with_nested_fields_and_utc_dates() {
    let env = Env::with_defaults();
    let out = env.ok(&[
        "import",
        "--from",
        "woocommerce",
        &sample("woocommerce-orders.json"),
    ]);
    assert_eq!(out.trim(), "imported 2, updated 0, rejected 0");
    let now = "2017-03-22T20:00:00Z";
    // 723 is completed: date_completed_gmt 2017-03-21T19:54:51 is UTC.
    let shipped = plan_line(&env, now, "723", "shipment");
    assert_eq!(
        shipped["window"]["opens"], "2017-03-21T19:54:51Z",
        "{shipped}"
    );
    // 727 is processing: not shipped.
    assert!(plan_line(&env, now, "727", "shipment")["window"].is_null());
    // The product name's &ndash; is decoded before it reaches a message.
    let preview = env.run(&[
        "preview", "--order", "727", "--stage", "shipment", "--now", now,
    ]);
    let shown = text(&preview.stdout);
    assert!(!shown.contains("&ndash;"), "{shown}");
}

#[test]
fn a_mapped_column_missing_from_the_header_stops_the_import_before_any_row() {
    let config = format!(
        "{}\n[mappings.typo.columns]\norder_id = \"Name\"\nbuyer_email = \"Email\"\nproduct_name = \"Item\"\nshipped_at = \"Fulfilled At\"\n",
        common::BASE_CONFIG
    );
    let env = Env::new(&config);
    let file = env.write(
        "orders.csv",
        "Name,Email,Item,Fulfilled at\n#1,a@example.com,Lamp,2026-01-05T10:00:00Z\n",
    );
    let out = env.run(&["import", "--mapping", "typo", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("'Fulfilled At'"), "{err}");
    assert!(err.contains("nearest: 'Fulfilled at'"), "{err}");
    assert!(
        env.plan("2026-01-06T00:00:00Z").is_empty(),
        "no order stored"
    );

    let file = env.write(
        "no_email.csv",
        "order_id,product_name,Mail\n1,Lamp,a@example.com\n",
    );
    let out = env.run(&["import", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("no column gives the buyer's email"), "{err}");
}

#[test]
fn custom_mappings_have_delimiters_date_formats_groups_paths_and_status_maps() {
    let config = format!(
        r#"{}
[mappings.semi]
delimiter = ";"
date_formats = ["%d.%m.%Y %H:%M"]
group_by = "Bestellung"
[mappings.semi.columns]
order_id = "Bestellung"
buyer_email = "E-Mail"
item_name = "Artikel"
item_quantity = "Menge"
shipped_at = "Versand"
status = "Status"
[mappings.semi.status]
versendet = "shipped"
offen = "pending"

[mappings.nested.columns]
order_id = "id"
buyer_email = "customer.email"
buyer_name = "customer.name"
item_name = "lines.title"
"#,
        common::BASE_CONFIG
    );
    let env = Env::new(&config);
    let file = env.write(
        "bestellungen.csv",
        "Bestellung;E-Mail;Artikel;Menge;Versand;Status\n\
         A1;a@example.com;Tasse;2;05.01.2026 10:00;versendet\n\
         A1;;Kanne;1;;\n\
         A2;b@example.com;Teller;1;;offen\n",
    );
    let out = env.ok(&["import", "--mapping", "semi", file.to_str().unwrap()]);
    assert_eq!(out.trim(), "imported 2, updated 0, rejected 0");
    let line = plan_line(&env, "2026-01-06T00:00:00Z", "A1", "shipment");
    assert_eq!(line["window"]["opens"], "2026-01-05T10:00:00Z", "{line}");

    let file = env.write(
        "orders.jsonl",
        "{\"id\": 9, \"customer\": {\"email\": \"c@example.com\", \"name\": \"Cy Oh\"}, \"lines\": [{\"title\": \"Bowl\"}, {\"title\": \"Spoon\"}]}\n",
    );
    let out = env.ok(&["import", "--mapping", "nested", file.to_str().unwrap()]);
    assert_eq!(out.trim(), "imported 1, updated 0, rejected 0");
}

#[test]
fn line_breaks_are_refused_in_header_fields_and_kept_in_free_text() {
    let env = Env::with_defaults();
    let file = env.write(
        "orders.csv",
        "order_id,buyer_email,buyer_name,product_name,notes\n\
         1,a@example.com,\"Ann\nBcc: x@evil.example\",Lamp,\n\
         2,b@example.com,Bo,Lamp,\"Please leave it\nat the back door\"\n",
    );
    let out = env.run(&["import", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("imported 1, updated 0, rejected 1"));
    let err = text(&out.stderr);
    assert!(
        err.contains(":2: field 'buyer_name' contains a line break"),
        "{err}"
    );
}

#[test]
fn an_invisible_character_does_not_make_a_second_marketplace_or_order() {
    let env = Env::with_defaults();
    let out = env.import_csv(
        "a.csv",
        "order_id,marketplace,buyer_email,product_name\n7,shop,a@example.com,Lamp\n",
    );
    assert!(out.status.success());
    let out = env.import_csv(
        "b.csv",
        "order_id,marketplace,buyer_email,product_name\n7\u{200b},shop\u{200b},a@example.com,Lamp\n",
    );
    assert_eq!(
        text(&out.stdout).trim(),
        "imported 0, updated 1, rejected 0"
    );
}

#[test]
fn plan_says_where_each_buyers_zone_came_from() {
    let env = Env::with_defaults();
    env.ok(&[
        "import",
        "--from",
        "woocommerce",
        &sample("woocommerce-orders.json"),
    ]);
    env.ok(&[
        "import",
        "--from",
        "amazon",
        &sample("amazon-order-report.txt"),
    ]);
    let out = env.import_csv(
        "own.csv",
        "order_id,buyer_email,product_name,time_zone\nZ1,z@example.com,Lamp,Asia/Tokyo\nZ2,y@example.com,Lamp,\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines = env.plan("2017-03-22T20:00:00Z");
    let zone = |order: &str| {
        let line = lines
            .iter()
            .find(|l| l["order_id"] == order)
            .unwrap_or_else(|| panic!("no plan line for {order}"));
        (
            line["time_zone"].as_str().unwrap().to_string(),
            line["time_zone_source"].as_str().unwrap().to_string(),
        )
    };
    // WooCommerce's sample ships to San Francisco, CA and to Rio de Janeiro.
    assert_eq!(
        zone("727"),
        ("America/Los_Angeles".into(), "address".into())
    );
    assert_eq!(zone("723"), ("America/Sao_Paulo".into(), "address".into()));
    // Amazon's: Alaska, with the state's own zone.
    assert_eq!(
        zone("234-5678901-2345678"),
        ("America/Anchorage".into(), "address".into())
    );
    assert_eq!(zone("Z1"), ("Asia/Tokyo".into(), "order".into()));
    assert_eq!(zone("Z2"), ("UTC".into(), "default".into()));
    let table = env.ok(&["plan", "--now", "2017-03-22T20:00:00Z", "--order", "727"]);
    assert!(table.contains("America/Los_Angeles (address)"), "{table}");
}

#[test]
fn every_line_item_reaches_the_message_and_the_lint() {
    let env = Env::with_defaults();
    let header = "Name,Email,Financial Status,Fulfillment Status,Fulfilled at,Lineitem name,Lineitem quantity,Shipping Name,Shipping Country";
    let csv = format!(
        "{header}\n\
         #1,a@example.com,paid,fulfilled,2026-01-05 10:00:00 +0000,Oak Lamp,1,Ann Lee,GB\n\
         #1,a@example.com,,,,Linen Shade,2,,\n\
         #2,b@example.com,paid,fulfilled,2026-01-05 10:00:00 +0000,Oak Lamp,1,Bo Ek,GB\n\
         #2,b@example.com,,,,Baby Changing Pad,1,,\n\
         #3,c@example.com,paid,fulfilled,2026-01-05 10:00:00 +0000,Oak Lamp,1,Cy Oh,GB\n"
    );
    let file = env.write("orders_export.csv", &csv);
    let out = env.ok(&["import", "--from", "shopify", file.to_str().unwrap()]);
    assert_eq!(out.trim(), "imported 3, updated 0, rejected 0");
    let now = "2026-01-05T12:00:00Z";
    let preview = |order: &str| {
        let out = env.run(&[
            "preview", "--order", order, "--stage", "shipment", "--now", now,
        ]);
        let shown = format!("{}{}", text(&out.stdout), text(&out.stderr));
        (out.status.code(), shown)
    };
    let (code, several) = preview("#1");
    assert_eq!(code, Some(0), "{several}");
    assert!(
        several.contains("Subject: Your order is on its way: Oak Lamp and 1 more"),
        "{several}"
    );
    assert!(
        several.contains("- 1 × Oak Lamp") && several.contains("- 2 × Linen Shade"),
        "{several}"
    );
    let (_, one) = preview("#3");
    assert!(
        one.contains("Subject: Your Oak Lamp is on its way"),
        "{one}"
    );
    assert!(!one.contains(" × "), "{one}");
    // A forbidden word in the second item's name blocks the message and
    // says which item it came from.
    let (code, blocked) = preview("#2");
    assert_eq!(code, Some(1), "{blocked}");
    assert!(blocked.contains("order.items[1].name"), "{blocked}");
}

#[test]
fn the_inbox_reads_its_files_as_the_configured_source() {
    let config = format!(
        "{}\n[import]\ninbox = \"inbox\"\nfrom = \"amazon\"\n",
        common::BASE_CONFIG
    );
    let env = Env::new(&config);
    std::fs::create_dir_all(env.path("inbox")).unwrap();
    let mut daemon = std::process::Command::new(env!("CARGO_BIN_EXE_followupd"))
        .arg("-c")
        .arg(env.path("config.toml"))
        .arg("run")
        .env_remove("FOLLOWUPD_CONFIG")
        .env_remove("FOLLOWUPD_DATABASE_URL")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("followupd run starts");
    for name in ["amazon-order-report.txt", "amazon-all-orders.txt"] {
        std::fs::copy(sample(name), env.path(&format!("inbox/.{name}.tmp"))).unwrap();
        std::fs::rename(
            env.path(&format!("inbox/.{name}.tmp")),
            env.path(&format!("inbox/{name}")),
        )
        .unwrap();
    }
    let done = env.path("inbox/done/amazon-order-report.txt");
    let errors = env.path("inbox/rejected/amazon-all-orders.txt.errors");
    let arrived = common::eventually(std::time::Duration::from_secs(20), || {
        done.exists() && errors.exists()
    });
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert!(
        arrived,
        "inbox: done {}, errors {}",
        done.exists(),
        errors.exists()
    );
    let why = std::fs::read_to_string(&errors).unwrap();
    assert!(
        why.contains("All Orders report has no buyer-email column"),
        "{why}"
    );
    let lines = env.plan("2009-01-10T00:00:00Z");
    assert_eq!(lines.len(), 4 * 3, "four Amazon orders, three stages each");
}
