//! Each event type's schema against its checked-in copy in `crates/events/schemas/`.
//! An incompatible change fails, always. A compatible one (a new optional field) fails
//! until the copy is updated: `UPDATE_EVENT_SCHEMAS=1 cargo test -p events --test schemas`.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

#[test]
fn event_schemas_change_only_compatibly_and_match_their_checked_in_copies() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemas");
    let update = std::env::var("UPDATE_EVENT_SCHEMAS").is_ok_and(|v| v == "1");
    let mut failures = Vec::new();
    for (name, current) in events::schemas::all() {
        let path = dir.join(format!("{name}.json"));
        let rendered = serde_json::to_string_pretty(&current).unwrap() + "\n";
        let Ok(text) = std::fs::read_to_string(&path) else {
            if update {
                std::fs::write(&path, &rendered).unwrap();
            } else {
                failures.push(format!(
                    "{name}: no checked-in schema at {}",
                    path.display()
                ));
            }
            continue;
        };
        let checked_in: serde_json::Value = serde_json::from_str(&text).unwrap();
        let problems = events::schemas::incompatibilities(&checked_in, &current);
        if !problems.is_empty() {
            failures.push(format!(
                "{name} changed incompatibly; add a new version instead: {}",
                problems.join("; ")
            ));
        } else if checked_in != current {
            if update {
                std::fs::write(&path, &rendered).unwrap();
            } else {
                failures.push(format!("{name} changed compatibly; update its checked-in schema (UPDATE_EVENT_SCHEMAS=1)"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
