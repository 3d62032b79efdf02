//! The invariants, checked after every scenario.

use crate::harness::*;

/// What a scenario tells the checker.
pub struct Expect<'a> {
    /// The instant to plan for (windows and next attempts are checked
    /// against it).
    pub now: DateTime<Utc>,
    /// Stages configured with `on_unknown = "resend"`.
    pub resend_stages: &'a [&'a str],
    /// `Some(n)`: the log has exactly n more transport attempts than the
    /// server saw transactions (n = attempts that failed before a
    /// transaction could start, such as a withheld greeting). `None`: only
    /// "no more transactions than logged attempts" (a killed process may
    /// have logged nothing, or logged an attempt that never reached the
    /// server).
    pub unattributed: Option<usize>,
}

/// The figures the checker found.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Figures {
    pub orders: i64,
    pub stages: BTreeMap<String, usize>,
    /// Messages the server accepted, in all.
    pub received: usize,
    /// Distinct Message-IDs among them.
    pub distinct_received: usize,
    /// Deliveries beyond the first that were deliberate and logged
    /// (on_unknown = resend, or a manual resend).
    pub resends: usize,
    /// Deliveries beyond what was allowed: must be 0.
    pub duplicates: usize,
    /// Stages the database calls sent that the server never got, and open
    /// stages nothing will look at again: must be 0.
    pub lost: usize,
    /// Transactions the server recorded (greetings that never came are not
    /// transactions).
    pub server_transactions: usize,
    /// Transport attempts in the send log.
    pub logged_attempts: usize,
}

impl Figures {
    pub fn state(&self, state: &str) -> usize {
        self.stages.get(state).copied().unwrap_or(0)
    }
}

/// The invariants, run after every scenario (docs/reliability.md):
///
/// 1. every stage is in a known state and none is left in `sending`; a
///    stage still scheduled or retrying has a next look planned, and a
///    next send inside its window;
/// 2. every send attempt has a send-log row (each attempt number of each
///    stage is logged; the server saw no more transactions per recipient
///    than the log has attempts, and exactly as many where the scenario
///    says so);
/// 3. the server saw each Message-ID at most once, except deliberate
///    re-sends (on_unknown = "resend" after a doubt, or a manual resend),
///    each logged as such; a stage the server has is `sent` or `unknown`
///    in the database, and a stage the database calls `sent` is on the
///    server.
pub fn check_invariants(env: &Env, servers: &[&SmtpServer], expect: &Expect) -> Figures {
    let (figures, violations) = invariants(env, servers, expect);
    assert_invariants(&figures, &violations);
    figures
}

pub fn assert_invariants(figures: &Figures, violations: &[String]) {
    if !violations.is_empty() {
        let shown: Vec<&str> = violations.iter().take(40).map(|s| s.as_str()).collect();
        panic!(
            "{} invariant violations (figures {figures:?}); the first ones:\n{}",
            violations.len(),
            shown.join("\n")
        );
    }
}

/// [`check_invariants`] without the panic: the figures and every violation.
pub fn invariants(env: &Env, servers: &[&SmtpServer], expect: &Expect) -> (Figures, Vec<String>) {
    let db = Db::open(env);
    let stages = db.stages();
    let log = db.log();
    let mut figures = Figures {
        orders: db.scalar("SELECT COUNT(*) FROM orders"),
        ..Default::default()
    };
    drop(db);
    let plan: HashMap<Key, Value> = plan(env, expect.now)
        .into_iter()
        .map(|l| {
            (
                (
                    l["marketplace"].as_str().unwrap().to_string(),
                    l["order_id"].as_str().unwrap().to_string(),
                    l["stage"].as_str().unwrap().to_string(),
                ),
                l,
            )
        })
        .collect();
    let mut violations: Vec<String> = Vec::new();
    let mut log_by_stage: HashMap<Key, Vec<&LogRec>> = HashMap::new();
    for row in &log {
        log_by_stage.entry(row.key()).or_default().push(row);
    }

    // 1. States, and open stages that will be looked at again.
    for s in &stages {
        *figures.stages.entry(s.state.clone()).or_default() += 1;
        let name = format!("{}/{}/{}", s.marketplace, s.order_id, s.stage);
        if !STATES.contains(&s.state.as_str()) {
            violations.push(format!("{name}: unknown state '{}'", s.state));
        }
        if s.state == "sending" {
            violations.push(format!("{name}: left in sending after a clean stop"));
        }
        if s.state != "scheduled" && s.state != "retrying" {
            continue;
        }
        let Some(line) = plan.get(&s.key()) else {
            violations.push(format!("{name}: no plan line"));
            continue;
        };
        let window = &line["window"];
        if window.is_null() {
            continue; // No anchor date yet: only new order data can help.
        }
        if s.next_check_at.is_none() {
            figures.lost += 1;
            violations.push(format!(
                "{name}: {} with a window but no next check: nothing will look at it again",
                s.state
            ));
        }
        let opens = at(window["opens"].as_str().unwrap());
        let closes = at(window["closes"].as_str().unwrap());
        match line["state"].as_str().unwrap() {
            "due" if !(opens <= expect.now && expect.now < closes) => violations.push(format!(
                "{name}: due at {} outside its window {opens}..{closes}",
                expect.now
            )),
            "scheduled" | "retrying" => {
                if let Some(next) = line["next_send"].as_str().map(at) {
                    if !(opens <= next && next < closes) {
                        violations.push(format!(
                            "{name}: next send {next} outside its window {opens}..{closes}"
                        ));
                    }
                }
            }
            _ => {}
        }
    }

    // 3. What the server got against what the database says.
    let received: Vec<Value> = servers.iter().flat_map(|s| s.received()).collect();
    let attempts: Vec<Value> = servers.iter().flat_map(|s| s.attempts()).collect();
    let mut by_id: BTreeMap<String, usize> = BTreeMap::new();
    for r in &received {
        match r["message_id"].as_str() {
            Some(id) => *by_id.entry(bare_id(id)).or_default() += 1,
            None => violations.push(format!("server got a message without a Message-ID: {r}")),
        }
    }
    figures.received = received.len();
    figures.distinct_received = by_id.len();
    let stage_by_id: HashMap<&str, &StageRec> = stages
        .iter()
        .filter_map(|s| s.message_id.as_deref().map(|id| (id, s)))
        .collect();
    for (id, &count) in &by_id {
        let Some(s) = stage_by_id.get(id.as_str()) else {
            violations.push(format!(
                "the server has {id}, which no stage in the database claimed"
            ));
            continue;
        };
        let rows = log_by_stage.get(&s.key()).cloned().unwrap_or_default();
        // Each in-doubt episode of an on_unknown = "resend" stage allows one
        // deliberate re-send (so twice in all after one doubt); a manual
        // resend allows one more. Each claim delivers at most once.
        let episodes = rows.iter().filter(|r| r.is_in_doubt_episode()).count();
        let manual = rows.iter().filter(|r| r.is_manual_resend()).count();
        let logged_resends = rows.iter().filter(|r| r.is_logged_resend()).count();
        let resend_stage = expect.resend_stages.contains(&s.stage.as_str());
        if (episodes > 0 || logged_resends > 0) && !resend_stage {
            violations.push(format!(
                "{id}: re-sent as in doubt, but its stage is on_unknown = hold"
            ));
        }
        let allowed = (1 + episodes + manual).min(s.attempts.max(1) as usize);
        if count > allowed {
            figures.duplicates += count - allowed;
            violations.push(format!(
                "{id}: the server got it {count} times; allowed {allowed} ({} claims, {episodes} \
                 in-doubt re-sends, {manual} manual)",
                s.attempts
            ));
        }
        if count > 1 && manual == 0 && logged_resends == 0 {
            violations.push(format!(
                "{id}: delivered {count} times, but no send-log row says it was a re-send \
                 of an in-doubt attempt"
            ));
        }
        figures.resends += (count - 1).min(episodes + manual);
        let last_status = rows.last().map(|r| r.status.as_str());
        let settled = match s.state.as_str() {
            "sent" | "unknown" => true,
            // Recovered after a crash, its re-send still to come.
            "retrying" => resend_stage && last_status == Some("unknown"),
            _ => false,
        };
        if !settled {
            violations.push(format!(
                "{id}: the server has it, but the stage is '{}' (last log status {last_status:?})",
                s.state
            ));
        }
    }
    for s in stages.iter().filter(|s| s.state == "sent") {
        let on_server = s
            .message_id
            .as_deref()
            .is_some_and(|id| by_id.contains_key(id));
        if !on_server {
            figures.lost += 1;
            violations.push(format!(
                "{}/{}/{}: sent in the database, never received by the server ({:?})",
                s.marketplace, s.order_id, s.stage, s.message_id
            ));
        }
    }

    // 2. Every attempt is logged.
    for s in stages.iter().filter(|s| s.attempts > 0) {
        let logged: HashSet<i64> = log_by_stage
            .get(&s.key())
            .map(|rows| {
                rows.iter()
                    .filter(|r| {
                        ATTEMPT_STATUSES.contains(&r.status.as_str()) || r.status == "blocked"
                    })
                    .map(|r| r.attempt)
                    .collect()
            })
            .unwrap_or_default();
        for n in 1..=s.attempts {
            if !logged.contains(&n) {
                violations.push(format!(
                    "{}/{}/{}: attempt {n} of {} has no send-log row",
                    s.marketplace, s.order_id, s.stage, s.attempts
                ));
            }
        }
    }
    let mut server_tx: BTreeMap<String, usize> = BTreeMap::new();
    for a in &attempts {
        if let Some(r) = attempt_recipient(a) {
            *server_tx.entry(r).or_default() += 1;
        }
    }
    let mut logged_tx: BTreeMap<String, usize> = BTreeMap::new();
    for row in log.iter().filter(|r| r.is_transport_attempt()) {
        *logged_tx.entry(row.recipient.to_lowercase()).or_default() += 1;
    }
    figures.server_transactions = server_tx.values().sum();
    figures.logged_attempts = logged_tx.values().sum();
    for (r, &n) in &server_tx {
        let logged = logged_tx.get(r).copied().unwrap_or(0);
        if n > logged {
            violations.push(format!(
                "{r}: the server saw {n} transactions, the send log has {logged} attempts"
            ));
        }
    }
    if let Some(unattributed) = expect.unattributed {
        if figures.logged_attempts != figures.server_transactions + unattributed {
            violations.push(format!(
                "the send log has {} transport attempts, the server saw {} transactions and \
                 {unattributed} connections without one",
                figures.logged_attempts, figures.server_transactions
            ));
        }
    }

    (figures, violations)
}

/// Ticks from `from` until nothing is open before `horizon`: each tick
/// jumps to the next moment the scheduler wants (but at least `step`
/// ahead), so retries with backoff take a handful of ticks. Returns the
/// last instant ticked and the number of ticks.
pub fn tick_until_settled(
    env: &Env,
    from: DateTime<Utc>,
    horizon: DateTime<Utc>,
    step: chrono::Duration,
) -> (DateTime<Utc>, usize) {
    let mut t = from;
    let mut ticks = 0;
    loop {
        tick(env, t);
        ticks += 1;
        assert!(ticks < 2000, "still ticking at {t}");
        let next = Db::open(env).next_check();
        let Some(next) = next.and_then(|s| DateTime::from_timestamp(s, 0)) else {
            return (t, ticks);
        };
        let next = next.max(t + step);
        if next > horizon {
            return (t, ticks);
        }
        t = next;
    }
}
