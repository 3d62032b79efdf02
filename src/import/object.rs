//! One JSON object's values: fields by name or by a dotted path into nested
//! objects and arrays (`billing.email`, `line_items.name`), line items from
//! arrays, the rest as extras.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::mapping::{slot, Mapping, FIELDS, ITEM_FIELDS};
use super::values::{RowOutcome, RowValues};
use super::Rejection;

/// Reads one object's values by `mapping`; `status_paths` are the paths a
/// source reads its status from.
pub(super) fn values(
    object: Map<String, Value>,
    mapping: &Mapping,
    status_paths: &[&str],
    line: u64,
) -> RowOutcome<'static> {
    let reject = |reason: String| Rejection { line, reason };
    let root = Value::Object(object);
    let mut values = RowValues {
        line,
        ..RowValues::default()
    };
    for (i, field) in FIELDS.iter().enumerate() {
        if ITEM_FIELDS.contains(field) {
            continue;
        }
        let found = match mapping.names_of(field) {
            Some(paths) => paths.iter().find_map(|p| first_text(&root, p)),
            None => first_text(&root, field),
        };
        if let Some(text) = found {
            values.fields[i] = Cow::Owned(text);
        }
    }
    values.items = items(&root, mapping);
    values.status_cells = status_paths
        .iter()
        .map(|p| Cow::Owned(first_text(&root, p).unwrap_or_default()))
        .collect();
    let group = mapping
        .group_by
        .as_deref()
        .map(|p| first_text(&root, p).unwrap_or_default());
    let Value::Object(object) = root else {
        unreachable!("built from an object above")
    };
    // The first step of every mapped path is read; it is no extra.
    let consumed: Vec<&str> = mapping
        .columns
        .values()
        .flatten()
        .map(|p| p.split('.').next().unwrap_or(p))
        .collect();
    for (key, value) in object {
        if key == "extra" {
            let Value::Object(extra) = value else {
                return Err(reject("'extra' must be an object".into()));
            };
            for (k, v) in extra {
                insert_extra(&mut values, k, v);
            }
            continue;
        }
        let wanted = match &mapping.extras {
            Some(extras) => extras.contains(&key),
            None => slot(&key).is_none() && !consumed.contains(&key.as_str()),
        };
        if wanted {
            insert_extra(&mut values, key, value);
        }
    }
    Ok((group, values))
}

fn insert_extra(values: &mut RowValues<'_>, key: String, value: Value) {
    let text = text_of(value);
    if !text.is_empty() {
        values.extra.insert(key, text);
    }
}

/// The line items: the item fields' paths read in step, one item for each
/// value of the name's path.
fn items(root: &Value, mapping: &Mapping) -> Vec<super::values::RawItem> {
    let lists: Vec<Vec<String>> = ITEM_FIELDS
        .iter()
        .map(|field| {
            let paths = mapping.names_of(field);
            let found = match paths {
                Some(paths) => paths
                    .iter()
                    .map(|p| lookup(root, p))
                    .find(|v| !v.is_empty())
                    .unwrap_or_default(),
                None => lookup(root, field),
            };
            found.into_iter().map(|v| text_of(v.clone())).collect()
        })
        .collect();
    let at = |list: &Vec<String>, i: usize| list.get(i).cloned().unwrap_or_default();
    (0..lists[0].len())
        .filter(|i| !lists[0][*i].trim().is_empty())
        .map(|i| {
            [
                at(&lists[0], i),
                at(&lists[1], i),
                at(&lists[2], i),
                at(&lists[3], i),
            ]
        })
        .collect()
}

/// The first non-empty value at `path`, as text.
fn first_text(root: &Value, path: &str) -> Option<String> {
    lookup(root, path)
        .into_iter()
        .map(|v| text_of(v.clone()))
        .find(|t| !t.is_empty())
}

/// The values at a dotted `path`. A step into an array goes into each of
/// its elements, so `line_items.name` is every item's name. A key that
/// itself contains the dots is found too.
pub(super) fn lookup<'v>(root: &'v Value, path: &str) -> Vec<&'v Value> {
    if let Some(v) = root.get(path) {
        return expand(v);
    }
    let mut current = vec![root];
    for step in path.split('.') {
        current = current
            .into_iter()
            .filter_map(|v| v.get(step))
            .flat_map(expand)
            .collect();
    }
    current
}

fn expand(value: &Value) -> Vec<&Value> {
    match value {
        Value::Array(elements) => elements.iter().collect(),
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

/// A JSON value as the text a CSV cell would hold.
pub(super) fn text_of(value: Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s,
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::mapping::slot_of;

    #[test]
    fn paths_reach_nested_objects_and_every_array_element() {
        let v: Value = serde_json::json!({
            "billing": {"email": "a@x.example"},
            "line_items": [{"name": "Cup", "quantity": 2}, {"name": "Pot", "quantity": 1}],
            "odd.key": "kept",
            "none": null
        });
        assert_eq!(
            first_text(&v, "billing.email").as_deref(),
            Some("a@x.example")
        );
        let names: Vec<String> = lookup(&v, "line_items.name")
            .into_iter()
            .map(|v| text_of(v.clone()))
            .collect();
        assert_eq!(names, ["Cup", "Pot"]);
        assert_eq!(first_text(&v, "odd.key").as_deref(), Some("kept"));
        assert_eq!(first_text(&v, "none"), None);
        assert_eq!(first_text(&v, "billing.phone"), None);
    }

    #[test]
    fn items_and_fields_come_from_their_paths() {
        let mut mapping = Mapping::default();
        for (field, path) in [
            ("buyer_email", "billing.email"),
            ("item_name", "line_items.name"),
            ("item_quantity", "line_items.quantity"),
        ] {
            mapping.columns.insert(field.into(), vec![path.into()]);
        }
        let object = serde_json::json!({
            "order_id": 7,
            "billing": {"email": "a@x.example"},
            "line_items": [{"name": "Cup", "quantity": 2}, {"name": "Pot"}],
            "currency": "EUR"
        });
        let Value::Object(object) = object else {
            panic!()
        };
        let (_, values) = values(object, &mapping, &[], 3).unwrap();
        assert_eq!(values.fields[slot_of("order_id")], "7");
        assert_eq!(values.fields[slot_of("buyer_email")], "a@x.example");
        assert_eq!(values.items[0], ["Cup", "2", "", ""].map(String::from));
        assert_eq!(values.items[1][0], "Pot");
        assert_eq!(
            values.extra.get("currency").map(String::as_str),
            Some("EUR")
        );
        assert!(!values.extra.contains_key("billing"));
    }
}
