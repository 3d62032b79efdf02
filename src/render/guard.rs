//! Limits a template cannot escape: how much a render may produce, how much
//! work it may do and how long it may take.
//!
//! Tera has no hooks of its own, so the templates are instrumented when
//! they load: every loop turn, macro call and template (or include) starts
//! by calling `__step`, which counts it with the static text it is about to
//! write; every value printed, assigned or passed through a filter goes
//! through `__size`, which counts its bytes; every filter that can make its
//! output much larger than its input is preceded by `__guard`, which refuses
//! to run it when the worst case would not fit. All of them check the
//! clock. Rendering itself writes into [`Capped`], which stops at
//! [`MAX_MESSAGE`]. Recursion is refused before anything renders
//! ([`super::analysis`]): the call graph of macros and includes has no cycle.
//!
//! The counters live in a thread-local [`Budget`] set up by [`within`]
//! around one message: Tera renders synchronously on the calling thread.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use tera::ast::{Block, Expr, ExprVal, FunctionCall, Node, WS};
use tera::{Tera, Value};

/// The most a rendered message (subject and bodies together) may hold.
pub const MAX_MESSAGE: usize = 1 << 20;
/// The most a render may produce along the way: printed, assigned and
/// filtered values, and the text of loop turns, counted each time.
pub const MAX_PRODUCED: usize = 4 * MAX_MESSAGE;
/// Loop turns, macro calls and templates started in one message.
pub const MAX_STEPS: u64 = 100_000;
/// Wall-clock time for one message.
pub const MAX_TIME: Duration = Duration::from_secs(1);
/// Terms in one `~` concatenation, which Tera builds before any check can
/// run (each term may be a long order field).
pub const MAX_CONCAT_TERMS: usize = 32;

/// Which limit a render ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The message, or what was produced on the way, passed its size cap.
    Size,
    /// Too many loop turns, macro calls or included templates.
    Steps,
    /// Past [`MAX_TIME`].
    Time,
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Limit::Size => write!(
                f,
                "message too large (over {} KiB rendered, or {} KiB produced while rendering)",
                MAX_MESSAGE / 1024,
                MAX_PRODUCED / 1024
            ),
            Limit::Steps => write!(
                f,
                "template does too much work (over {MAX_STEPS} loop turns, macro calls and includes)"
            ),
            Limit::Time => write!(f, "template takes too long (over {MAX_TIME:?} a message)"),
        }
    }
}

/// What one message's render has used so far.
struct Budget {
    started: Instant,
    steps: u64,
    produced: usize,
    written: usize,
    exceeded: Option<Limit>,
}

thread_local! {
    static BUDGET: RefCell<Option<Budget>> = const { RefCell::new(None) };
}

/// Runs `render` (one message) under a fresh budget; the limit it ran
/// into, if any, comes back with its result ([`exceeded`] tells it on the
/// way).
pub fn within<T>(render: impl FnOnce() -> T) -> (T, Option<Limit>) {
    BUDGET.with(|b| {
        *b.borrow_mut() = Some(Budget {
            started: Instant::now(),
            steps: 0,
            produced: 0,
            written: 0,
            exceeded: None,
        })
    });
    let result = render();
    let exceeded = BUDGET.with(|b| b.borrow_mut().take().and_then(|b| b.exceeded));
    (result, exceeded)
}

/// The limit the render under way ran into, if any.
pub fn exceeded() -> Option<Limit> {
    BUDGET.with(|b| b.borrow().as_ref().and_then(|b| b.exceeded))
}

/// Counts `steps` and `bytes` against the budget, and the clock; outside
/// [`within`] (never, in followupd) nothing is counted.
fn charge(steps: u64, produced: usize, written: usize) -> Result<(), Limit> {
    BUDGET.with(|b| {
        let mut b = b.borrow_mut();
        let Some(b) = b.as_mut() else {
            return Ok(());
        };
        if let Some(limit) = b.exceeded {
            return Err(limit);
        }
        b.steps += steps;
        b.produced = b.produced.saturating_add(produced);
        b.written = b.written.saturating_add(written);
        let exceeded = if b.produced > MAX_PRODUCED || b.written > MAX_MESSAGE {
            Some(Limit::Size)
        } else if b.steps > MAX_STEPS {
            Some(Limit::Steps)
        } else if b.started.elapsed() > MAX_TIME {
            Some(Limit::Time)
        } else {
            None
        };
        b.exceeded = exceeded;
        exceeded.map_or(Ok(()), Err)
    })
}

/// Room left for produced bytes.
fn room() -> usize {
    BUDGET.with(|b| {
        b.borrow()
            .as_ref()
            .map_or(usize::MAX, |b| MAX_PRODUCED.saturating_sub(b.produced))
    })
}

fn refuse(limit: Limit) -> tera::Error {
    tera::Error::msg(limit.to_string())
}

/// A writer that takes what fits in [`MAX_MESSAGE`] (for the whole
/// message) and fails after that, which stops Tera at once.
pub struct Capped(pub Vec<u8>);

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        charge(0, 0, buf.len()).map_err(|limit| std::io::Error::other(limit.to_string()))?;
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// About how many bytes a value takes (strings by length, eight a number,
/// containers the sum of their parts).
fn size(value: &Value) -> usize {
    match value {
        Value::Null | Value::Bool(_) => 1,
        Value::Number(_) => 8,
        Value::String(s) => s.len(),
        Value::Array(items) => items.iter().map(|v| 8 + size(v)).sum(),
        Value::Object(map) => map.iter().map(|(k, v)| 8 + k.len() + size(v)).sum(),
    }
}

/// Filters whose output is never much larger than their input (a few times
/// at most, counted by the `__size` after them). Every other filter gets a
/// `__guard` in front.
const BOUNDED_FILTERS: &[&str] = &[
    "safe",
    "default",
    "length",
    "first",
    "last",
    "nth",
    "lower",
    "upper",
    "trim",
    "trim_start",
    "trim_end",
    "trim_start_matches",
    "trim_end_matches",
    "truncate",
    "wordcount",
    "capitalize",
    "title",
    "striptags",
    "spaceless",
    "int",
    "float",
    "abs",
    "round",
    "get",
    "slice",
    "reverse",
    "sort",
    "unique",
    "as_str",
    "filter",
    "map",
    "group_by",
];

const STEP: &str = "__step";
const SIZE: &str = "__size";
const GUARD: &str = "__guard";

/// Registers the counting functions and filters, and replaces the
/// functions a template must not have: `range` without a bound, and
/// `get_env`, which would print the service's environment (a password
/// given by `password_env`, say) into a buyer's email.
pub fn register(tera: &mut Tera) {
    tera.register_function(STEP, |args: &HashMap<String, Value>| {
        let bytes = args.get("bytes").and_then(Value::as_u64).unwrap_or(0) as usize;
        charge(1, bytes, 0).map_err(refuse)?;
        Ok(Value::String(String::new()))
    });
    tera.register_filter(SIZE, |value: &Value, _: &HashMap<String, Value>| {
        charge(0, size(value), 0).map_err(refuse)?;
        Ok(value.clone())
    });
    tera.register_filter(GUARD, |value: &Value, args: &HashMap<String, Value>| {
        // The worst case of the filters that grow text: every byte of the
        // input replaced by (or joined with) every argument.
        let args: usize = args.values().map(size).sum();
        let worst = (size(value) + 1).saturating_mul(8 + args);
        if worst > room() {
            charge(0, worst, 0).map_err(refuse)?;
        }
        charge(0, 0, 0).map_err(refuse)?;
        Ok(value.clone())
    });
    tera.register_function("range", range);
    tera.register_function("get_env", |_: &HashMap<String, Value>| {
        Err(tera::Error::msg(
            "get_env is not available in followupd templates (it would print the service's environment)",
        ))
    });
}

/// Tera's `range(start, end, step_by)`, refused beyond [`MAX_STEPS`] items.
fn range(args: &HashMap<String, Value>) -> tera::Result<Value> {
    let number = |name: &str, default: Option<u64>| -> tera::Result<u64> {
        match args.get(name) {
            Some(v) => v.as_u64().ok_or_else(|| {
                tera::Error::msg(format!(
                    "Function `range` received {name}={v} but `{name}` can only be a number"
                ))
            }),
            None => default.ok_or_else(|| {
                tera::Error::msg(format!(
                    "Function `range` was called without a `{name}` argument"
                ))
            }),
        }
    };
    let (start, end, step) = (
        number("start", Some(0))?,
        number("end", None)?,
        number("step_by", Some(1))?,
    );
    if start > end {
        return Err(tera::Error::msg(
            "Function `range` was called with a `start` argument greater than the `end` one",
        ));
    }
    if step == 0 {
        return Err(tera::Error::msg(
            "Function `range` needs a `step_by` above 0",
        ));
    }
    let count = (end - start).div_ceil(step);
    if count > MAX_STEPS {
        charge(count, 0, 0).map_err(refuse)?;
    }
    charge(0, 8 * count as usize, 0).map_err(refuse)?;
    Ok(Value::Array(
        (start..end)
            .step_by(step as usize)
            .map(Value::from)
            .collect(),
    ))
}

// ---------------------------------------------------------------------------
// Instrumenting the parsed templates
// ---------------------------------------------------------------------------

/// Instruments every template in `tera` (see the module comment).
pub fn instrument(tera: &mut Tera) {
    for template in tera.templates.values_mut() {
        body(&mut template.ast, true);
        for definition in template.macros.values_mut() {
            body(&mut definition.body, true);
        }
        for block in template.blocks.values_mut() {
            body(&mut block.body, true);
        }
        for definitions in template.blocks_definitions.values_mut() {
            for (_, block) in definitions {
                body(&mut block.body, true);
            }
        }
    }
}

/// Instruments the nodes of one body; `counted` bodies start with a step
/// that counts their own text.
fn body(nodes: &mut Vec<Node>, counted: bool) {
    for node in nodes.iter_mut() {
        match node {
            Node::VariableBlock(_, e) => printed(e),
            Node::Set(_, set) => printed(&mut set.value),
            Node::FilterSection(_, section, _) => {
                call(&mut section.filter);
                body(&mut section.body, false);
            }
            Node::Block(_, Block { body: b, .. }, _) => body(b, true),
            Node::Forloop(_, forloop, _) => {
                printed(&mut forloop.container);
                body(&mut forloop.body, true);
                if let Some(empty) = &mut forloop.empty_body {
                    body(empty, false);
                }
            }
            Node::If(branches, _) => {
                for (_, condition, b) in &mut branches.conditions {
                    expr(condition);
                    body(b, false);
                }
                if let Some((_, b)) = &mut branches.otherwise {
                    body(b, false);
                }
            }
            Node::MacroDefinition(_, definition, _) => body(&mut definition.body, true),
            _ => {}
        }
    }
    if counted {
        let bytes = static_text(nodes) as i64;
        let args = HashMap::from([("bytes".to_string(), Expr::new(ExprVal::Int(bytes)))]);
        let step = FunctionCall {
            name: STEP.into(),
            args,
        };
        nodes.insert(
            0,
            Node::VariableBlock(WS::default(), Expr::new(ExprVal::FunctionCall(step))),
        );
    }
}

/// The text a body writes itself, branches included, loops and blocks
/// (counted on their own) not.
fn static_text(nodes: &[Node]) -> usize {
    nodes
        .iter()
        .map(|node| match node {
            Node::Text(s) | Node::Raw(_, s, _) => s.len(),
            Node::FilterSection(_, section, _) => static_text(&section.body),
            Node::If(branches, _) => {
                branches
                    .conditions
                    .iter()
                    .map(|(_, _, b)| static_text(b))
                    .sum::<usize>()
                    + branches
                        .otherwise
                        .as_ref()
                        .map_or(0, |(_, b)| static_text(b))
            }
            Node::Forloop(_, forloop, _) => forloop.empty_body.as_deref().map_or(0, static_text),
            _ => 0,
        })
        .sum()
}

/// An expression whose value is printed or kept: counted once at the end
/// (a macro call's output was counted inside it).
fn printed(e: &mut Expr) {
    expr(e);
    if e.filters.is_empty() && !matches!(e.val, ExprVal::MacroCall(_)) {
        e.filters.push(size_filter());
    }
}

fn size_filter() -> FunctionCall {
    FunctionCall {
        name: SIZE.into(),
        args: HashMap::new(),
    }
}

/// Instruments an expression: each filter's output is counted, each
/// filter that may grow its input is guarded, and so are the values inside.
fn expr(e: &mut Expr) {
    value(&mut e.val);
    for filter in &mut e.filters {
        call(filter);
    }
    let mut filters = Vec::with_capacity(e.filters.len() * 3);
    for filter in e.filters.drain(..) {
        let name = filter.name.clone();
        if !BOUNDED_FILTERS.contains(&name.as_str()) {
            filters.push(FunctionCall {
                name: GUARD.into(),
                args: filter.args.clone(),
            });
        }
        filters.push(filter);
        // `safe` must stay last to mark the value safe, and `default` first
        // to be evaluated as Tera's special case; neither changes a size.
        if name != "safe" && name != "default" {
            filters.push(size_filter());
        }
    }
    e.filters = filters;
}

/// The arguments of a filter or function call.
fn call(call: &mut FunctionCall) {
    for arg in call.args.values_mut() {
        expr(arg);
    }
}

fn value(v: &mut ExprVal) {
    match v {
        ExprVal::Math(m) => {
            expr(&mut m.lhs);
            expr(&mut m.rhs);
        }
        ExprVal::Logic(l) => {
            expr(&mut l.lhs);
            expr(&mut l.rhs);
        }
        ExprVal::In(i) => {
            expr(&mut i.lhs);
            expr(&mut i.rhs);
        }
        ExprVal::Test(t) => t.args.iter_mut().for_each(expr),
        ExprVal::MacroCall(m) => m.args.values_mut().for_each(expr),
        ExprVal::FunctionCall(f) => call(f),
        // Each item is counted as it is built into the array.
        ExprVal::Array(items) => items.iter_mut().for_each(printed),
        ExprVal::StringConcat(c) => c.values.iter_mut().for_each(value),
        _ => {}
    }
}
