//! What is refused before anything renders: a call graph of macros and
//! includes with a cycle (Tera would recurse until the stack overflows), a
//! `~` concatenation too long for the runtime limits to see in time, and the
//! order fields the templates read (for the sample renders).

use std::collections::BTreeMap;

use tera::ast::{Expr, ExprVal, Node};
use tera::Tera;

use super::guard::MAX_CONCAT_TERMS;

/// A node of the call graph: a template (rendered or included) or a macro
/// of a template.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Callee {
    Template(String),
    Macro(String, String),
}

impl std::fmt::Display for Callee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Callee::Template(t) => write!(f, "template {t}"),
            Callee::Macro(t, m) => write!(f, "macro {m} of {t}"),
        }
    }
}

/// A template that could never finish rendering, or could run out of
/// stack: a macro or include that reaches itself again. Returns the
/// template it was found in and the cycle, written out.
pub fn recursion(tera: &Tera) -> Option<(String, String)> {
    let mut graph: BTreeMap<Callee, Vec<Callee>> = BTreeMap::new();
    for (name, template) in &tera.templates {
        let imports = &template.imported_macro_files;
        let mut calls = Vec::new();
        for node in &template.ast {
            if !matches!(node, Node::MacroDefinition(..)) {
                node_calls(node, name, imports, &mut calls);
            }
        }
        for definitions in template.blocks_definitions.values() {
            for (owner, block) in definitions {
                let owner_imports = tera
                    .templates
                    .get(owner)
                    .map_or(imports, |t| &t.imported_macro_files);
                for node in &block.body {
                    node_calls(node, owner, owner_imports, &mut calls);
                }
            }
        }
        if let Some(parent) = &template.parent {
            calls.push(Callee::Template(parent.clone()));
        }
        graph.insert(Callee::Template(name.clone()), calls);
        for (macro_name, definition) in &template.macros {
            let mut calls = Vec::new();
            for node in &definition.body {
                node_calls(node, name, imports, &mut calls);
            }
            graph.insert(Callee::Macro(name.clone(), macro_name.clone()), calls);
        }
    }
    // Depth-first, with the path kept to name the cycle.
    let mut done = std::collections::BTreeSet::new();
    for start in graph.keys() {
        let mut path: Vec<Callee> = Vec::new();
        if let Some(cycle) = find_cycle(&graph, start, &mut path, &mut done) {
            let file = match &cycle[0] {
                Callee::Template(t) | Callee::Macro(t, _) => t.clone(),
            };
            let written: Vec<String> = cycle.iter().map(ToString::to_string).collect();
            return Some((file, written.join(" -> ")));
        }
    }
    None
}

fn find_cycle(
    graph: &BTreeMap<Callee, Vec<Callee>>,
    at: &Callee,
    path: &mut Vec<Callee>,
    done: &mut std::collections::BTreeSet<Callee>,
) -> Option<Vec<Callee>> {
    if let Some(i) = path.iter().position(|c| c == at) {
        let mut cycle = path[i..].to_vec();
        cycle.push(at.clone());
        return Some(cycle);
    }
    if done.contains(at) {
        return None;
    }
    path.push(at.clone());
    for next in graph.get(at).into_iter().flatten() {
        if let Some(cycle) = find_cycle(graph, next, path, done) {
            return Some(cycle);
        }
    }
    path.pop();
    done.insert(at.clone());
    None
}

/// The macros and templates a node calls, for the template `owner`.
fn node_calls(node: &Node, owner: &str, imports: &[(String, String)], out: &mut Vec<Callee>) {
    let nodes = |b: &[Node], out: &mut Vec<Callee>| {
        for n in b {
            node_calls(n, owner, imports, out);
        }
    };
    match node {
        Node::VariableBlock(_, e) => expr_calls(e, owner, imports, out),
        Node::Set(_, set) => expr_calls(&set.value, owner, imports, out),
        Node::Include(_, names, _) => {
            out.extend(names.iter().map(|n| Callee::Template(n.clone())));
        }
        Node::FilterSection(_, section, _) => {
            section
                .filter
                .args
                .values()
                .for_each(|e| expr_calls(e, owner, imports, out));
            nodes(&section.body, out);
        }
        Node::Block(_, block, _) => nodes(&block.body, out),
        Node::Forloop(_, forloop, _) => {
            expr_calls(&forloop.container, owner, imports, out);
            nodes(&forloop.body, out);
            if let Some(empty) = &forloop.empty_body {
                nodes(empty, out);
            }
        }
        Node::If(branches, _) => {
            for (_, condition, b) in &branches.conditions {
                expr_calls(condition, owner, imports, out);
                nodes(b, out);
            }
            if let Some((_, b)) = &branches.otherwise {
                nodes(b, out);
            }
        }
        _ => {}
    }
}

fn expr_calls(e: &Expr, owner: &str, imports: &[(String, String)], out: &mut Vec<Callee>) {
    let mut walk = |e: &Expr| expr_calls(e, owner, imports, out);
    for filter in &e.filters {
        filter.args.values().for_each(&mut walk);
    }
    match &e.val {
        ExprVal::Math(m) => {
            walk(&m.lhs);
            walk(&m.rhs);
        }
        ExprVal::Logic(l) => {
            walk(&l.lhs);
            walk(&l.rhs);
        }
        ExprVal::In(i) => {
            walk(&i.lhs);
            walk(&i.rhs);
        }
        ExprVal::Test(t) => t.args.iter().for_each(walk),
        ExprVal::FunctionCall(f) => f.args.values().for_each(walk),
        ExprVal::Array(items) => items.iter().for_each(walk),
        ExprVal::StringConcat(c) => {
            for v in &c.values {
                expr_calls(&Expr::new(v.clone()), owner, imports, out);
            }
        }
        ExprVal::MacroCall(m) => {
            m.args.values().for_each(walk);
            let file = if m.namespace == "self" {
                Some(owner.to_string())
            } else {
                imports
                    .iter()
                    .find(|(_, ns)| *ns == m.namespace)
                    .map(|(file, _)| file.clone())
            };
            if let Some(file) = file {
                out.push(Callee::Macro(file, m.name.clone()));
            }
        }
        _ => {}
    }
}

/// The first `~` concatenation with more than [`MAX_CONCAT_TERMS`] terms,
/// as the template it is in.
pub fn long_concatenation(tera: &Tera) -> Option<String> {
    fn terms(v: &ExprVal) -> usize {
        match v {
            ExprVal::StringConcat(c) => c.values.iter().map(terms).sum(),
            _ => 1,
        }
    }
    let mut found = None;
    each_expr(tera, |template, e| {
        if found.is_none() && terms(&e.val) > MAX_CONCAT_TERMS {
            found = Some(template.to_string());
        }
    });
    found
}

/// The names of the `order.extra` fields the templates use, so that the
/// sample orders can carry them (an export with a `note` column always has
/// one; a template may print `{{ order.extra.note }}` unguarded).
pub fn extra_fields(tera: &Tera) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    each_expr(tera, |_, e| {
        let ExprVal::Ident(ident) = &e.val else {
            return;
        };
        let Some(rest) = ident.strip_prefix("order.extra") else {
            return;
        };
        let name = if let Some(dotted) = rest.strip_prefix('.') {
            dotted.split(['.', '[']).next().unwrap_or_default()
        } else if let Some(bracketed) = rest.strip_prefix('[') {
            bracketed
                .trim_start_matches(['"', '\''])
                .split(['"', '\'', ']'])
                .next()
                .unwrap_or_default()
        } else {
            ""
        };
        if !name.is_empty() {
            names.insert(name.to_string());
        }
    });
    names
}

/// Calls `visit` with every expression of every template (nested ones too:
/// arguments, operands, array items), and the template's name.
fn each_expr(tera: &Tera, mut visit: impl FnMut(&str, &Expr)) {
    fn expr(e: &Expr, visit: &mut dyn FnMut(&Expr)) {
        visit(e);
        for f in &e.filters {
            f.args.values().for_each(|a| expr(a, visit));
        }
        match &e.val {
            ExprVal::Math(m) => {
                expr(&m.lhs, visit);
                expr(&m.rhs, visit);
            }
            ExprVal::Logic(l) => {
                expr(&l.lhs, visit);
                expr(&l.rhs, visit);
            }
            ExprVal::In(i) => {
                expr(&i.lhs, visit);
                expr(&i.rhs, visit);
            }
            ExprVal::Test(t) => t.args.iter().for_each(|a| expr(a, visit)),
            ExprVal::MacroCall(m) => m.args.values().for_each(|a| expr(a, visit)),
            ExprVal::FunctionCall(f) => f.args.values().for_each(|a| expr(a, visit)),
            ExprVal::Array(items) => items.iter().for_each(|a| expr(a, visit)),
            ExprVal::StringConcat(c) => {
                for v in &c.values {
                    expr(&Expr::new(v.clone()), visit);
                }
            }
            _ => {}
        }
    }
    fn nodes(b: &[Node], visit: &mut dyn FnMut(&Expr)) {
        for n in b {
            match n {
                Node::VariableBlock(_, e) => expr(e, visit),
                Node::Set(_, s) => expr(&s.value, visit),
                Node::Forloop(_, f, _) => {
                    expr(&f.container, visit);
                    nodes(&f.body, visit);
                    if let Some(empty) = &f.empty_body {
                        nodes(empty, visit);
                    }
                }
                Node::If(i, _) => {
                    for (_, c, b) in &i.conditions {
                        expr(c, visit);
                        nodes(b, visit);
                    }
                    if let Some((_, b)) = &i.otherwise {
                        nodes(b, visit);
                    }
                }
                Node::Block(_, b, _) => nodes(&b.body, visit),
                Node::FilterSection(_, s, _) => {
                    s.filter.args.values().for_each(|a| expr(a, visit));
                    nodes(&s.body, visit);
                }
                Node::MacroDefinition(_, d, _) => nodes(&d.body, visit),
                _ => {}
            }
        }
    }
    for (name, template) in &tera.templates {
        let mut at = |e: &Expr| visit(name, e);
        nodes(&template.ast, &mut at);
        for definition in template.macros.values() {
            nodes(&definition.body, &mut at);
        }
    }
}
