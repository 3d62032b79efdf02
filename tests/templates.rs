//! Templates that must not take the service down: recursion, runaway loops
//! and output, misspelt variables, and links out of the templates folder
//! are refused at load (`check`, `run`, a reload) with the reason, while a
//! running service keeps its previous set; a message that renders too
//! large is blocked, not sent.

mod common;

use std::fs::File;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use common::{eventually, Env, BASE_CONFIG};

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `followupd check`, which must finish (within `limit`) and fail on the
/// templates; returns everything it printed.
fn check_refuses(env: &Env, limit: Duration) -> String {
    let started = Instant::now();
    let mut child = env
        .command()
        .arg("check")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let finished = eventually(limit, || child.try_wait().unwrap().is_some());
    if !finished {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    let printed = text(&out);
    assert!(
        finished,
        "check did not finish within {limit:?}:\n{printed}"
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "check must fail on the templates, not crash ({:?}, {:?}):\n{printed}",
        out.status,
        started.elapsed()
    );
    let line = printed
        .lines()
        .find(|l| l.contains("templates:"))
        .unwrap_or_else(|| panic!("no templates line:\n{printed}"));
    assert!(line.starts_with("FAIL"), "{printed}");
    line.to_string()
}

const SELF_CALLING_MACRO: &str = "{% macro f(n) %}{{ self::f(n=n+1) }}{% endmacro f %}";

#[test]
fn a_macro_that_calls_itself_is_refused_by_check_and_by_run() {
    let env = Env::with_defaults();
    env.write("templates/shipment/macros.tera", SELF_CALLING_MACRO);
    env.write(
        "templates/shipment/body.txt.tera",
        "{% import \"shipment/macros.tera\" as m %}Order {{ order.id }} {{ m::f(n=1) }}\n",
    );
    let line = check_refuses(&env, Duration::from_secs(20));
    assert!(
        line.contains("shipment/macros.tera") && line.contains("macro f"),
        "{line}"
    );
    assert!(line.contains("reaches itself"), "{line}");
    // `tick` composes nothing with it, and says why instead of aborting.
    let out = env.run(&["tick"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("reaches itself"), "{}", text(&out));
}

#[test]
fn macros_calling_each_other_in_a_circle_through_an_include_are_refused() {
    let env = Env::with_defaults();
    env.write(
        "templates/shipment/a.tera",
        "{% import \"shipment/b.tera\" as b %}{% macro a() %}{{ b::b() }}{% endmacro a %}",
    );
    env.write(
        "templates/shipment/b.tera",
        "{% macro b() %}{% include \"shipment/c.tera\" %}{% endmacro b %}",
    );
    env.write(
        "templates/shipment/c.tera",
        "{% import \"shipment/a.tera\" as a %}{{ a::a() }}",
    );
    env.write(
        "templates/shipment/body.txt.tera",
        "{% import \"shipment/a.tera\" as a %}{{ a::a() }}\n",
    );
    let line = check_refuses(&env, Duration::from_secs(20));
    assert!(line.contains("reaches itself"), "{line}");
}

/// Each runs into a limit quickly, in little memory, and is named.
#[test]
fn runaway_loops_and_output_are_refused_with_the_limit_they_hit() {
    let cases = [
        (
            "a loop over a huge range",
            "{% for i in range(end=100000000) %}x{% endfor %}",
            "too much work",
        ),
        (
            "nested loops without output",
            "{% set r = range(end=1000) %}{% for a in r %}{% for b in r %}{% for c in r %}{% endfor %}{% endfor %}{% endfor %}",
            "too much work",
        ),
        (
            "a loop that writes a gigabyte",
            "{% for a in range(end=1000) %}{% for b in range(end=1000) %}{{ order.product_name }} and a long line of text to make it big{% endfor %}{% endfor %}",
            "message too large",
        ),
        (
            "a string doubled sixty times",
            "{% set_global s = \"xx\" %}{% for i in range(end=60) %}{% set_global s = s ~ s %}{% endfor %}{{ s | length }}",
            "message too large",
        ),
        (
            "a filter that multiplies its input",
            "{{ order.product_name | replace(from=\"a\", to=\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\") | replace(from=\"a\", to=\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\") | replace(from=\"a\", to=\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\") | replace(from=\"a\", to=\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\") | length }}",
            "message too large",
        ),
    ];
    for (what, body, reason) in cases {
        let env = Env::with_defaults();
        env.write(
            "templates/follow_up/body.txt.tera",
            &format!("Order {{{{ order.id }}}}\n{body}\n"),
        );
        let started = Instant::now();
        let line = check_refuses(&env, Duration::from_secs(20));
        // On a loaded machine the clock may run out first: also a limit.
        assert!(
            line.contains("follow_up/body.txt.tera")
                && (line.contains(reason) || line.contains("takes too long")),
            "{what}: {line}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{what}: took {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn a_misspelt_variable_is_refused_by_check_even_in_a_branch_the_full_sample_skips() {
    let env = Env::with_defaults();
    env.write(
        "templates/shipment/body.txt.tera",
        "Order {{ order.id }}\n{% if order.tracking_url %}{{ order.tracking_url }}{% else %}{{ order.trackng_url }}{% endif %}\n",
    );
    let line = check_refuses(&env, Duration::from_secs(20));
    assert!(
        line.contains("shipment/body.txt.tera") && line.contains("trackng_url"),
        "{line}"
    );
}

#[test]
fn get_env_cannot_print_the_environment_into_a_message() {
    let env = Env::with_defaults();
    env.write(
        "templates/shipment/body.txt.tera",
        "{{ get_env(name=\"HOME\") }}\n",
    );
    let line = check_refuses(&env, Duration::from_secs(20));
    assert!(line.contains("get_env is not available"), "{line}");
}

#[test]
fn links_that_leave_the_templates_folder_or_loop_are_refused() {
    // A link to a secret outside, included from a body.
    let env = Env::with_defaults();
    let secret = env.write("smtp-password", "S3cretLinkPassw0rd");
    std::os::unix::fs::symlink(&secret, env.path("templates/shipment/secret.tera")).unwrap();
    env.write(
        "templates/shipment/body.txt.tera",
        "{% include \"shipment/secret.tera\" %}\n",
    );
    let line = check_refuses(&env, Duration::from_secs(20));
    assert!(
        line.contains("secret.tera") && line.contains("outside the templates folder"),
        "{line}"
    );
    assert!(!line.contains("S3cretLinkPassw0rd"), "{line}");

    // Two links to `.`: check finishes, and says which link loops.
    let env = Env::with_defaults();
    std::os::unix::fs::symlink(".", env.path("templates/a")).unwrap();
    std::os::unix::fs::symlink(".", env.path("templates/b")).unwrap();
    let line = check_refuses(&env, Duration::from_secs(20));
    assert!(
        line.contains("templates/a") && line.contains("loop"),
        "{line}"
    );

    // A named pipe called *.tera would block the read for ever.
    let env = Env::with_defaults();
    let fifo = env.path("templates/shipment/pipe.tera");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let line = check_refuses(&env, Duration::from_secs(20));
    assert!(
        line.contains("pipe.tera") && line.contains("not a regular file"),
        "{line}"
    );

    // A link inside the folder is fine.
    let env = Env::with_defaults();
    std::fs::rename(
        env.path("templates/shipment/subject.txt.tera"),
        env.path("templates/shipment/real-subject.tera"),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        "real-subject.tera",
        env.path("templates/shipment/subject.txt.tera"),
    )
    .unwrap();
    let out = env.run(&["check"]);
    assert!(text(&out).contains("ok    templates"), "{}", text(&out));
}

/// A hostile product name (2 MB, within the import's 4 MiB row limit)
/// makes the message too large: it is blocked with that reason, quickly,
/// and the next order is sent.
#[test]
fn an_oversized_rendered_message_is_blocked_as_too_large() {
    let env = Env::new(&format!(
        "{BASE_CONFIG}\n[sending_hours]\nstart = \"00:00\"\nend = \"00:00\"\n"
    ));
    let huge = "Teapot ".repeat(300_000);
    let csv = format!(
        "{}H1,h1@buyer.example,Hal,{huge},UTC,-1h,,shipped,,,\nH2,h2@buyer.example,Ida,Mug,UTC,-1h,,shipped,,,\n",
        common::CSV_HEADER
    );
    let out = env.import_csv("orders.csv", &csv);
    assert!(out.status.success(), "{}", text(&out));
    let started = Instant::now();
    let out = env.run(&["tick"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let now = chrono::Utc::now().to_rfc3339();
    let h1 = env.stage_state(&now, "H1", "shipment");
    assert_eq!(h1["state"], "blocked", "{h1}");
    assert!(
        h1["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("message too large"),
        "{h1}"
    );
    let h2 = env.stage_state(&now, "H2", "shipment");
    assert_eq!(h2["state"], "sent", "{h2}");
    assert_eq!(env.outbox().len(), 1);
}

/// A running service refuses a reload to a set that cannot render, keeps
/// sending with the set it had, and takes a fixed set afterwards.
#[test]
fn a_running_service_refuses_a_broken_set_and_keeps_the_old_one() {
    let env = Env::new(&format!(
        "{BASE_CONFIG}\n[sending_hours]\nstart = \"00:00\"\nend = \"00:00\"\n\n[import]\ninbox = \"inbox\"\n\n[daemon]\nwatch_templates = false\n"
    ));
    std::fs::create_dir_all(env.path("inbox")).unwrap();
    let log = env.path("run.stderr");
    let mut child: Child = env
        .command()
        .arg("run")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        eventually(Duration::from_secs(30), || read()
            .contains("followupd is running")),
        "{}",
        read()
    );
    let original = std::fs::read_to_string(env.path("templates/shipment/body.txt.tera")).unwrap();
    for (n, broken) in [
        format!("{SELF_CALLING_MACRO}{{{{ self::f(n=1) }}}}\n"),
        "{% for i in range(end=100000000) %}x{% endfor %}\n".to_string(),
        "Order {{ order.id }} {{ order.trackng_url }}\n".to_string(),
    ]
    .iter()
    .enumerate()
    {
        env.write("templates/shipment/body.txt.tera", broken);
        let hup = std::process::Command::new("kill")
            .args(["-HUP", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(hup.success());
        let refused = eventually(Duration::from_secs(20), || {
            read().matches("reload refused").count() > n
        });
        assert!(refused, "reload {n} not refused:\n{}", read());
        assert!(child.try_wait().unwrap().is_none(), "{}", read());
    }
    // Still running on the original set: an order due now, dropped into
    // the inbox (a `followupd import` would load the broken set itself),
    // goes out with it.
    let csv = format!(
        "{}R1,r1@buyer.example,Ron,Mug,UTC,-1h,,shipped,,,\n",
        common::CSV_HEADER
    );
    std::fs::write(env.path("inbox/orders.csv.tmp"), csv).unwrap();
    std::fs::rename(
        env.path("inbox/orders.csv.tmp"),
        env.path("inbox/orders.csv"),
    )
    .unwrap();
    let sent = eventually(Duration::from_secs(20), || env.outbox().len() == 1);
    assert!(sent, "{}", read());
    let body = &env.outbox()[0].1;
    assert!(body.contains("R1"), "{body}");
    env.write("templates/shipment/body.txt.tera", &original);
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let stopped = eventually(Duration::from_secs(20), || {
        child.try_wait().unwrap().is_some()
    });
    if !stopped {
        let _ = child.kill();
    }
    assert!(stopped, "{}", read());
}
