//! The HTTP listener of `followupd run`, from the outside: the real daemon,
//! a real HTTP client (hyper's), Shopify's and WooCommerce's documented
//! payloads signed the way they sign them (base64 HMAC-SHA256 of the body),
//! and the database read back afterwards.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{backend, eventually, free_port, Backend, Env};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::{json, Value};

const SHOPIFY_SECRET: &str = "shpss_0123456789abcdef";
const WC_SECRET: &str = "wc-webhook-secret";
const API_TOKEN: &str = "api-token-1";

/// The test config: all-day sending hours, so a shipment goes at once.
fn config(port: u16) -> String {
    format!(
        r#"{base}
[sending_hours]
start = "00:00"
end = "00:00"

[http]
listen = "127.0.0.1:{port}"
body_limit = 65536
request_timeout = "5s"

[http.shopify]
secret_env = "TEST_SHOPIFY_SECRET"

[http.woocommerce]
secret_env = "TEST_WC_SECRET"

[http.api]
token_env = "TEST_API_TOKEN"
"#,
        base = common::BASE_CONFIG
    )
}

/// `followupd run` with the test secrets in its environment.
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn start(env: &Env, name: &str, port: u16) -> Self {
        Self::start_with(env, name, port, env.path("config.toml"))
    }

    /// An instance on its own config file (another port, the same database).
    fn start_with(env: &Env, name: &str, port: u16, config: PathBuf) -> Self {
        let log = env.path(&format!("{name}.log"));
        let child = common::launch::followupd(&config)
            .arg("run")
            .env("RUST_LOG", "info")
            .env("TEST_SHOPIFY_SECRET", SHOPIFY_SECRET)
            .env("TEST_WC_SECRET", WC_SECRET)
            .env("TEST_API_TOKEN", API_TOKEN)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("followupd starts");
        let mut daemon = Self { child, log };
        let up = eventually(Duration::from_secs(20), || {
            daemon.alive() && request(port, "GET", "/healthz", &[], Vec::new()).0 == 200
        });
        assert!(up, "the listener never answered; log:\n{}", daemon.log());
        daemon
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn term(&mut self, timeout: Duration) -> Option<ExitStatus> {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

type Headers = Vec<(String, String)>;

/// One request on a fresh connection: (status, body); status 0 when the
/// connection failed.
fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> (u16, String) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime
        .block_on(send(
            port,
            method.to_string(),
            path.to_string(),
            headers.to_vec(),
            body,
        ))
        .unwrap_or((0, String::new()))
}

async fn send(
    port: u16,
    method: String,
    path: String,
    headers: Headers,
    body: Vec<u8>,
) -> Result<(u16, String), String> {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let mut builder = hyper::Request::builder()
        .method(method.as_str())
        .uri(path.as_str())
        .header("host", format!("127.0.0.1:{port}"));
    for (name, value) in &headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let request = builder
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&bytes).trim().to_string()))
}

/// Many requests at once, each on its own connection.
fn concurrently(port: u16, requests: Vec<(String, Headers, Vec<u8>)>) -> Vec<(u16, String)> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let tasks: Vec<_> = requests
            .into_iter()
            .map(|(path, headers, body)| {
                tokio::spawn(send(port, "POST".into(), path, headers, body))
            })
            .collect();
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.unwrap().unwrap_or((0, String::new())));
        }
        results
    })
}

/// The base64 HMAC-SHA256 of `body`, as Shopify and WooCommerce sign.
fn sign(secret: &str, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(ring::hmac::sign(&key, body).as_ref())
}

fn sample(path: &str) -> Value {
    let path = common::repo().join("tests/data/webhooks").join(path);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Shopify's sample order as a live one: not cancelled, paid, nothing
/// shipped yet, with this id, update time and address.
fn shopify_order(id: u64, updated_at: &str, email: &str) -> Value {
    let mut order = sample("shopify/order.json");
    order["id"] = json!(id);
    order["updated_at"] = json!(updated_at);
    order["email"] = json!(email);
    order["cancelled_at"] = Value::Null;
    order["cancel_reason"] = Value::Null;
    order["financial_status"] = json!("paid");
    order
}

fn shopify_headers(topic: &str, event: &str, body: &[u8]) -> Headers {
    vec![
        ("content-type".into(), "application/json".into()),
        ("x-shopify-topic".into(), topic.into()),
        ("x-shopify-hmac-sha256".into(), sign(SHOPIFY_SECRET, body)),
        (
            "x-shopify-shop-domain".into(),
            "test-shop.myshopify.com".into(),
        ),
        ("x-shopify-event-id".into(), event.into()),
        ("x-shopify-webhook-id".into(), format!("w-{event}")),
    ]
}

fn shopify(port: u16, topic: &str, event: &str, payload: &Value) -> (u16, String) {
    let body = serde_json::to_vec(payload).unwrap();
    let headers = shopify_headers(topic, event, &body);
    request(port, "POST", "/webhooks/shopify", &headers, body)
}

fn woocommerce(port: u16, topic: &str, delivery: &str, payload: &Value) -> (u16, String) {
    let body = serde_json::to_vec(payload).unwrap();
    let headers = vec![
        ("content-type".into(), "application/json".into()),
        ("x-wc-webhook-source".into(), "https://shop.example/".into()),
        ("x-wc-webhook-topic".into(), topic.into()),
        ("x-wc-webhook-signature".into(), sign(WC_SECRET, &body)),
        ("x-wc-webhook-id".into(), "15".into()),
        ("x-wc-webhook-delivery-id".into(), delivery.into()),
    ];
    request(port, "POST", "/webhooks/woocommerce", &headers, body)
}

/// The database URL of `env`, as the daemon resolves it.
fn database_url(env: &Env) -> String {
    let config = std::fs::read_to_string(env.path("config.toml")).unwrap();
    let url = config
        .lines()
        .find_map(|l| l.trim().strip_prefix("url = \""))
        .and_then(|l| l.strip_suffix('"'))
        .unwrap()
        .to_string();
    match url.strip_prefix("sqlite://") {
        Some(path) => format!("sqlite://{}", env.path(path).display()),
        None => url,
    }
}

/// `SELECT` one row of text columns (NULL as ""), for reading back what
/// the daemon stored.
fn query(env: &Env, sql: &str, order_id: &str) -> Option<Vec<String>> {
    use sqlx::{Connection, Row};
    sqlx::any::install_default_drivers();
    let url = database_url(env);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
        let row = sqlx::query(sql)
            .bind(order_id)
            .fetch_optional(&mut conn)
            .await
            .unwrap();
        let _ = conn.close().await;
        row.map(|r| {
            (0..r.len())
                .map(|i| {
                    r.try_get::<Option<String>, _>(i)
                        .ok()
                        .flatten()
                        .or_else(|| {
                            r.try_get::<Option<i64>, _>(i)
                                .ok()
                                .flatten()
                                .map(|n| n.to_string())
                        })
                        .unwrap_or_default()
                })
                .collect()
        })
    })
}

/// buyer_email, status, shipped_at, delivered_at, tracking_url, time_zone.
fn order_row(env: &Env, order_id: &str) -> Option<Vec<String>> {
    query(
        env,
        "SELECT buyer_email, status, shipped_at, delivered_at, tracking_url, time_zone \
         FROM orders WHERE order_id = $1",
        order_id,
    )
}

fn order_count(env: &Env) -> i64 {
    query(env, "SELECT COUNT(*) FROM orders WHERE order_id <> $1", "")
        .map(|r| r[0].parse().unwrap())
        .unwrap()
}

/// The stored state and reason of one stage.
fn stage(env: &Env, order_id: &str, name: &str) -> (String, String) {
    let row = query(
        env,
        &format!("SELECT state, reason FROM stages WHERE order_id = $1 AND stage = '{name}'"),
        order_id,
    )
    .unwrap_or_else(|| panic!("no stage {name} for {order_id}"));
    (row[0].clone(), row[1].clone())
}

fn metric(port: u16, line_start: &str) -> Option<f64> {
    let (_, text) = request(port, "GET", "/metrics", &[], Vec::new());
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
}

on_both_backends! {
    fn shopify_deliveries_are_checked_stored_once_and_shipped() {
        let port = free_port();
        let env = Env::new(&config(port));
        let daemon = Daemon::start(&env, "d", port);
        let order = shopify_order(1001, "2026-12-01T10:00:00-05:00", "jon@example.com");
        let body = serde_json::to_vec(&order).unwrap();

        // Refused before anything is read or stored, each with its status.
        let mut unsigned = shopify_headers("orders/create", "e-0", &body);
        unsigned.retain(|(k, _)| k != "x-shopify-hmac-sha256");
        let (status, reason) = request(port, "POST", "/webhooks/shopify", &unsigned, body.clone());
        assert_eq!((status, reason.as_str()), (401, "missing X-Shopify-Hmac-Sha256 header"));
        let mut forged = shopify_headers("orders/create", "e-0", &body);
        forged[2].1 = sign("not-the-secret", &body);
        let (status, reason) = request(port, "POST", "/webhooks/shopify", &forged, body.clone());
        assert_eq!((status, reason.as_str()), (401, "the signature does not match the body"));
        let mut tampered = body.clone();
        *tampered.last_mut().unwrap() = b' ';
        let (status, _) = request(port, "POST", "/webhooks/shopify", &shopify_headers("orders/create", "e-0", &body), tampered);
        assert_eq!(status, 401);
        let big = vec![b' '; 70_000];
        let (status, reason) = request(port, "POST", "/webhooks/shopify", &shopify_headers("orders/create", "e-0", &big), big);
        assert_eq!((status, reason.as_str()), (413, "the body is larger than 65536 bytes"));
        let broken = b"{\"id\": 1001, ".to_vec();
        let (status, reason) = request(port, "POST", "/webhooks/shopify", &shopify_headers("orders/create", "e-0", &broken), broken);
        assert_eq!(status, 400, "{reason}");
        assert!(reason.starts_with("malformed JSON: "), "{reason}");
        let mut no_email = order.clone();
        for field in ["email", "contact_email"] {
            no_email[field] = Value::Null;
        }
        no_email["customer"]["email"] = Value::Null;
        let (status, reason) = shopify(port, "orders/create", "e-0", &no_email);
        assert_eq!(status, 422, "{reason}");
        assert!(reason.contains("buyer_email"), "{reason}");
        let (status, reason) = shopify(port, "products/update", "e-p", &json!({"id": 1}));
        assert_eq!((status, reason.as_str()), (200, "ignored: topic products/update"));
        assert_eq!(order_count(&env), 0, "a refused delivery stored something");

        // Applied once, however often it is delivered.
        assert_eq!(shopify(port, "orders/create", "e-1", &order), (200, "imported".into()));
        assert_eq!(shopify(port, "orders/create", "e-1", &order), (200, "duplicate".into()));
        // The same merchant action on another topic is another delivery.
        assert_eq!(shopify(port, "orders/paid", "e-1", &order), (200, "updated".into()));
        let row = order_row(&env, "1001").unwrap();
        assert_eq!(row[0], "jon@example.com");
        assert_eq!(row[1], "pending");
        assert_eq!(row[5], "America/New_York", "the zone of the Kentucky shipping address");

        // Shipped: the shipment notice goes out with the tracking link.
        let mut fulfillment = sample("shopify/fulfillment.json");
        fulfillment["order_id"] = json!(1001);
        fulfillment["created_at"] = json!(now_rfc3339());
        assert_eq!(shopify(port, "fulfillments/create", "e-2", &fulfillment), (200, "updated".into()));
        let sent = eventually(Duration::from_secs(15), || {
            env.outbox().iter().any(|(_, m)| m.contains("jon@example.com") && m.contains("1z827wk74630"))
        });
        assert!(sent, "no shipment notice; outbox: {:?}; log:\n{}", env.outbox(), daemon.log());
        let row = order_row(&env, "1001").unwrap();
        assert_eq!(row[1], "shipped");
        assert!(row[4].starts_with("https://www.ups.com/"), "{row:?}");

        // Delivered: only a `delivered` fulfillment event sets the time.
        let mut event = sample("shopify/fulfillment_event.json");
        event["order_id"] = json!(1001);
        event["happened_at"] = json!(now_rfc3339());
        let (status, reason) = shopify(port, "fulfillment_events/create", "e-3", &event);
        assert_eq!((status, reason.as_str()), (200, "ignored: fulfillment event in_transit"));
        event["status"] = json!("delivered");
        assert_eq!(shopify(port, "fulfillment_events/create", "e-4", &event), (200, "updated".into()));
        let row = order_row(&env, "1001").unwrap();
        assert_eq!(row[1], "delivered");
        assert!(!row[3].is_empty(), "{row:?}");

        // Every refusal was counted, under no label that names the order.
        let count = |labels: &str| metric(port, &format!("followupd_webhook_requests_total{{{labels}}}")).unwrap_or(0.0);
        assert_eq!(count("source=\"shopify\",topic=\"unknown\",result=\"unauthorized\""), 3.0);
        assert_eq!(count("source=\"shopify\",topic=\"unknown\",result=\"too_large\""), 1.0);
        assert_eq!(count("source=\"shopify\",topic=\"orders/create\",result=\"malformed\""), 1.0);
        assert_eq!(count("source=\"shopify\",topic=\"orders/create\",result=\"unprocessable\""), 1.0);
        assert_eq!(count("source=\"shopify\",topic=\"orders/create\",result=\"duplicate\""), 1.0);
        assert_eq!(metric(port, "followupd_messages_total{stage=\"shipment\",outcome=\"sent\"}"), Some(1.0));
        let (_, text) = request(port, "GET", "/metrics", &[], Vec::new());
        assert!(!text.contains("1001") && !text.contains("jon@example.com"), "{text}");
        assert!(!daemon.log().contains(SHOPIFY_SECRET));
    }

    fn an_older_update_never_rolls_an_order_back() {
        let port = free_port();
        let env = Env::new(&config(port));
        let _daemon = Daemon::start(&env, "d", port);
        let newer = shopify_order(2002, "2026-12-02T12:00:00Z", "new@example.com");
        let mut older = shopify_order(2002, "2026-12-02T11:00:00Z", "old@example.com");
        older["cancelled_at"] = json!("2026-12-02T11:00:00Z");
        assert_eq!(shopify(port, "orders/updated", "u-2", &newer), (200, "imported".into()));
        assert_eq!(shopify(port, "orders/updated", "u-1", &older), (200, "stale".into()));
        let row = order_row(&env, "2002").unwrap();
        assert_eq!((row[0].as_str(), row[1].as_str()), ("new@example.com", "pending"));
        // The same version again (orders/paid after orders/updated) applies.
        assert_eq!(shopify(port, "orders/paid", "u-3", &newer), (200, "updated".into()));
    }

    fn refunds_end_the_stages_they_should() {
        let port = free_port();
        let env = Env::new(&config(port));
        let _daemon = Daemon::start(&env, "d", port);
        for id in [3001u64, 3002] {
            let order = shopify_order(id, "2026-12-03T10:00:00Z", "jon@example.com");
            assert_eq!(shopify(port, "orders/create", &format!("c-{id}"), &order), (200, "imported".into()));
        }
        // Shopify's sample refunds two of the order's five line items: the
        // order is partially refunded, which ends the review request only.
        let mut partial = sample("shopify/refund.json");
        partial["order_id"] = json!(3001);
        assert_eq!(shopify(port, "refunds/create", "r-1", &partial), (200, "updated".into()));
        assert_eq!(order_row(&env, "3001").unwrap()[1], "partially_refunded");
        // The scheduler ends it when it next looks (a pass already under
        // way may look first at the unrefunded order); `plan` says now.
        let now = now_rfc3339();
        let review = env.stage_state(&now, "3001", "review_request");
        assert!(
            ["skipped", "will_skip"].contains(&review["state"].as_str().unwrap()),
            "{review}"
        );
        assert!(review["reason"].as_str().unwrap().contains("partially refunded"), "{review}");
        assert_ne!(stage(&env, "3001", "follow_up").0, "skipped");
        // Refunding every line item is a full refund.
        let mut full = sample("shopify/refund.json");
        full["order_id"] = json!(3002);
        let order = sample("shopify/order.json");
        full["refund_line_items"] = Value::Array(
            order["line_items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| json!({"line_item_id": l["id"], "quantity": l["quantity"]}))
                .collect(),
        );
        assert_eq!(shopify(port, "refunds/create", "r-2", &full), (200, "updated".into()));
        assert_eq!(order_row(&env, "3002").unwrap()[1], "refunded");
        // A refund of an order followupd never heard of changes nothing.
        partial["order_id"] = json!(3999);
        assert_eq!(shopify(port, "refunds/create", "r-3", &partial), (200, "unknown_order".into()));
    }

    fn woocommerce_pings_signs_deduplicates_and_deletes() {
        let port = free_port();
        let env = Env::new(&config(port));
        let _daemon = Daemon::start(&env, "d", port);
        let ping = vec![("content-type".to_string(), "application/x-www-form-urlencoded".to_string())];
        let (status, reason) = request(port, "POST", "/webhooks/woocommerce", &ping, b"webhook_id=15".to_vec());
        assert_eq!((status, reason.as_str()), (200, "pong"));
        let (status, _) = request(port, "POST", "/webhooks/woocommerce", &ping, b"{\"id\":727}".to_vec());
        assert_eq!(status, 401);

        let order = sample("woocommerce/order.json");
        assert_eq!(woocommerce(port, "order.created", "101", &order), (200, "imported".into()));
        assert_eq!(woocommerce(port, "order.created", "101", &order), (200, "duplicate".into()));
        let row = order_row(&env, "727").unwrap();
        assert_eq!(row[0], "john.doe@example.com");
        assert_eq!(row[5], "America/Los_Angeles");
        let mut older = order.clone();
        older["date_modified_gmt"] = json!("2017-03-22T19:00:00");
        older["status"] = json!("cancelled");
        assert_eq!(woocommerce(port, "order.updated", "102", &older), (200, "stale".into()));
        let body = serde_json::to_vec(&order).unwrap();
        let headers = vec![
            ("x-wc-webhook-topic".to_string(), "order.updated".to_string()),
            ("x-wc-webhook-signature".to_string(), sign("wrong", &body)),
            ("x-wc-webhook-delivery-id".to_string(), "103".to_string()),
        ];
        assert_eq!(request(port, "POST", "/webhooks/woocommerce", &headers, body).0, 401);
        assert_eq!(woocommerce(port, "order.deleted", "104", &json!({"id": 727})), (200, "updated".into()));
        assert_eq!(order_row(&env, "727").unwrap()[1], "cancelled");
    }

    fn the_orders_api_answers_for_each_entry() {
        let port = free_port();
        let env = Env::new(&config(port));
        let _daemon = Daemon::start(&env, "d", port);
        let orders = json!([
            {"order_id": "A-1", "buyer_email": "ann@example.com", "product_name": "Teapot", "shipped_at": "2026-12-01"},
            {"order_id": "A-2", "product_name": "Cup"},
            {"order_id": "A-3", "buyer_email": "bob@example.com", "product_name": "Saucer", "status": "lost"}
        ]);
        let body = serde_json::to_vec(&orders).unwrap();
        let auth = |t: &str| vec![("authorization".to_string(), format!("Bearer {t}"))];
        assert_eq!(request(port, "POST", "/api/orders", &[], body.clone()).0, 401);
        assert_eq!(request(port, "POST", "/api/orders", &auth("guess"), body.clone()).0, 401);
        let (status, text) = request(port, "POST", "/api/orders", &auth(API_TOKEN), body.clone());
        assert_eq!(status, 200, "{text}");
        let answer: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(answer["imported"], 1);
        assert_eq!(answer["rejected"], 2);
        assert_eq!(answer["orders"][0]["result"], "imported");
        assert_eq!(answer["orders"][1]["index"], 1);
        assert_eq!(answer["orders"][1]["reason"], "missing required field 'buyer_email'");
        assert!(answer["orders"][2]["reason"].as_str().unwrap().starts_with("unknown status 'lost'"));
        let (status, text) = request(port, "POST", "/api/orders", &auth(API_TOKEN), serde_json::to_vec(&orders[0]).unwrap());
        assert_eq!(status, 200);
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["orders"][0]["result"], "updated");
        let (status, _) = request(port, "POST", "/api/orders", &auth(API_TOKEN), serde_json::to_vec(&orders[1]).unwrap());
        assert_eq!(status, 422);
        assert_eq!(order_count(&env), 1);
        assert_eq!(request(port, "GET", "/readyz", &[], Vec::new()), (200, "ready".into()));
    }

    fn concurrent_deliveries_apply_once_and_all_land() {
        let port = free_port();
        let env = Env::new(&config(port));
        let _daemon = Daemon::start(&env, "d", port);
        // The same event 48 times at once: applied once.
        let order = shopify_order(4000, "2026-12-04T10:00:00Z", "jon@example.com");
        let body = serde_json::to_vec(&order).unwrap();
        let same = (0..48)
            .map(|_| ("/webhooks/shopify".to_string(), shopify_headers("orders/create", "dup", &body), body.clone()))
            .collect();
        let results = concurrently(port, same);
        assert!(results.iter().all(|(s, _)| *s == 200), "{results:?}");
        assert_eq!(results.iter().filter(|(_, r)| r == "imported").count(), 1, "{results:?}");
        assert_eq!(results.iter().filter(|(_, r)| r == "duplicate").count(), 47);
        // 200 different orders at once: every one stored.
        let distinct = (0..200u64)
            .map(|i| {
                let body = serde_json::to_vec(&shopify_order(5000 + i, "2026-12-04T10:00:00Z", "jon@example.com")).unwrap();
                ("/webhooks/shopify".to_string(), shopify_headers("orders/create", &format!("d-{i}"), &body), body)
            })
            .collect();
        let results = concurrently(port, distinct);
        assert!(results.iter().all(|r| r == &(200, "imported".to_string())), "{results:?}");
        assert_eq!(order_count(&env), 201);
    }

    fn an_acknowledged_change_survives_kill_9() {
        let port = free_port();
        let env = Env::new(&config(port));
        let mut daemon = Daemon::start(&env, "d", port);
        for i in 0..20u64 {
            let order = shopify_order(6000 + i, "2026-12-05T10:00:00Z", "jon@example.com");
            assert_eq!(shopify(port, "orders/create", &format!("k-{i}"), &order), (200, "imported".into()));
        }
        // Killed the moment the last 200 arrived.
        daemon.kill9();
        let daemon = Daemon::start(&env, "d2", port);
        assert_eq!(order_count(&env), 20, "log:\n{}", daemon.log());
        let order = shopify_order(6019, "2026-12-05T10:00:00Z", "jon@example.com");
        assert_eq!(shopify(port, "orders/create", "k-19", &order), (200, "duplicate".into()));
    }

    fn sigterm_answers_the_request_in_flight_then_stops() {
        let port = free_port();
        let env = Env::new(&config(port));
        let mut daemon = Daemon::start(&env, "d", port);
        let body = serde_json::to_vec(&shopify_order(7001, "2026-12-06T10:00:00Z", "jon@example.com")).unwrap();
        let mut head = format!("POST /webhooks/shopify HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: {}\r\n", body.len());
        for (name, value) in shopify_headers("orders/create", "t-1", &body) {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(&body[..100]).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        Command::new("kill").args(["-TERM", &daemon.child.id().to_string()]).status().unwrap();
        // No new connections once stopping...
        let refused = eventually(Duration::from_secs(5), || TcpStream::connect(("127.0.0.1", port)).is_err());
        assert!(refused, "still accepting after SIGTERM; log:\n{}", daemon.log());
        // ...but the request in flight is answered, and committed.
        stream.write_all(&body[100..]).unwrap();
        let mut answer = String::new();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = stream.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}; log:\n{}", daemon.log());
        assert!(answer.ends_with("imported\n"), "{answer}");
        let status = daemon.term(Duration::from_secs(20));
        assert!(status.is_some_and(|s| s.success()), "{status:?}; log:\n{}", daemon.log());
        assert_eq!(order_row(&env, "7001").unwrap()[0], "jon@example.com");
    }
}

/// A client that sends its headers or its body too slowly is cut off after
/// `request_timeout` (5 s here) instead of holding a connection.
#[test]
fn slow_clients_are_cut_off() {
    let port = free_port();
    let env = Env::new(&config(port));
    let _daemon = Daemon::start(&env, "d", port);
    let started = Instant::now();
    // Headers that never end.
    let mut headers = TcpStream::connect(("127.0.0.1", port)).unwrap();
    headers
        .write_all(b"POST /webhooks/shopify HTTP/1.1\r\nhost: x\r\n")
        .unwrap();
    // A body that stops after ten of its thousand bytes.
    let mut body = TcpStream::connect(("127.0.0.1", port)).unwrap();
    body.write_all(b"POST /webhooks/shopify HTTP/1.1\r\nhost: x\r\nx-shopify-hmac-sha256: AAAA\r\ncontent-length: 1000\r\n\r\n0123456789").unwrap();
    for stream in [&mut headers, &mut body] {
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
    }
    let mut answer = String::new();
    let _ = body.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(
        answer.contains("the body did not arrive within the request timeout"),
        "{answer}"
    );
    let mut rest = Vec::new();
    let cut = headers.read_to_end(&mut rest).is_ok();
    assert!(cut, "the connection with unfinished headers was not closed");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(15),
        "{took:?}"
    );
    // Meanwhile and afterwards the server answers others.
    assert_eq!(
        request(port, "GET", "/healthz", &[], Vec::new()),
        (200, "ok".into())
    );
}

/// `check` says whether the listener can bind, and never shows a secret.
#[test]
fn check_says_whether_the_listener_can_bind() {
    let port = free_port();
    let env = Env::new(&config(port));
    let check = || {
        let out = common::launch::followupd(&env.path("config.toml"))
            .arg("check")
            .env("TEST_SHOPIFY_SECRET", SHOPIFY_SECRET)
            .env("TEST_WC_SECRET", WC_SECRET)
            .env("TEST_API_TOKEN", API_TOKEN)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            !text.contains(SHOPIFY_SECRET) && !text.contains(API_TOKEN),
            "{text}"
        );
        (out.status.code(), text)
    };
    let (code, text) = check();
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains(&format!(
            "ok    http: 127.0.0.1:{port} can be bound; shopify (1 secret)"
        )),
        "{text}"
    );
    let _held = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let (code, text) = check();
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains(&format!("FAIL  http: cannot listen on 127.0.0.1:{port}")),
        "{text}"
    );
}

/// Two instances behind one load balancer share PostgreSQL: a delivery
/// that reaches both at once is still applied once.
#[test]
fn two_postgres_instances_apply_a_duplicate_once() {
    if !common::use_postgres() {
        return;
    }
    assert_eq!(backend(), Backend::Postgres);
    let (port_a, port_b) = (free_port(), free_port());
    let env = Env::new(&config(port_a));
    let text = std::fs::read_to_string(env.path("config.toml")).unwrap();
    env.write(
        "b/config.toml",
        &text.replace(&format!(":{port_a}\""), &format!(":{port_b}\"")),
    );
    common::copy_dir(&env.path("templates"), &env.path("b/templates"));
    let _a = Daemon::start(&env, "a", port_a);
    let _b = Daemon::start_with(&env, "b", port_b, env.path("b/config.toml"));
    for round in 0..20u64 {
        let body = serde_json::to_vec(&shopify_order(
            8000 + round,
            "2026-12-07T10:00:00Z",
            "jon@example.com",
        ))
        .unwrap();
        let headers = shopify_headers("orders/create", &format!("pg-{round}"), &body);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (x, y) = runtime.block_on(async {
            let x = tokio::spawn(send(
                port_a,
                "POST".into(),
                "/webhooks/shopify".into(),
                headers.clone(),
                body.clone(),
            ));
            let y = tokio::spawn(send(
                port_b,
                "POST".into(),
                "/webhooks/shopify".into(),
                headers.clone(),
                body.clone(),
            ));
            (x.await.unwrap().unwrap(), y.await.unwrap().unwrap())
        });
        let mut answers = [x.1.clone(), y.1.clone()];
        answers.sort();
        assert_eq!((x.0, y.0), (200, 200));
        assert_eq!(
            answers,
            ["duplicate".to_string(), "imported".to_string()],
            "round {round}"
        );
    }
    assert_eq!(order_count(&env), 20);
    // An older update reaching the other instance is still stale.
    let newer = shopify_order(8000, "2026-12-07T12:00:00Z", "new@example.com");
    let older = shopify_order(8000, "2026-12-07T11:00:00Z", "old@example.com");
    assert_eq!(
        shopify(port_a, "orders/updated", "pg-new", &newer),
        (200, "updated".into())
    );
    assert_eq!(
        shopify(port_b, "orders/updated", "pg-old", &older),
        (200, "stale".into())
    );
    assert_eq!(order_row(&env, "8000").unwrap()[0], "new@example.com");
}
