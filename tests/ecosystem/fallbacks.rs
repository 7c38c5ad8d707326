//! No silent "cannot happen" fallbacks in the sources (issue 12 item 8): an
//! impossible failure must stop with `expect("why")`, never carry on with an
//! all-zero key or signature, an empty file or a `"{}"` frame.

use super::{files_with_suffix, repo_root};

/// Fallbacks that turn an impossible error into wrong data, whitespace removed.
const FORBIDDEN: &[(&str, &str)] = &[
    (".unwrap_or([0u8;", "an all-zero key or signature"),
    ("String::from(\"{}\")", "an empty JSON object instead of the frame"),
    ("let_=hk.expand(", "an all-zero HKDF output"),
    ("try_from(url.len()).unwrap_or(", "a wrong length prefix in signed bytes"),
];

#[test]
fn no_silent_fallbacks_in_src() {
    let mut found = Vec::new();
    for path in files_with_suffix(&repo_root().join("src"), ".rs") {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let name = path.strip_prefix(repo_root()).unwrap_or(&path).display().to_string();
        for (pattern, what) in FORBIDDEN {
            if compact.contains(pattern) {
                found.push(format!("{name}: {pattern} ({what})"));
            }
        }
        // Serialising our own types cannot fail; a default (an empty file, `null`)
        // in its place would be written or sent as if it were the data.
        for (at, _) in compact.match_indices("serde_json::to_") {
            let statement = compact[at..].split(';').next().unwrap_or_default();
            if let Some(end) = statement.find(".unwrap_or") {
                let call = &statement[..end];
                found.push(format!("{name}: {call}.unwrap_or… (a default instead of the JSON)"));
            }
        }
    }
    assert!(found.is_empty(), "use expect(\"why\") instead:\n{}", found.join("\n"));
}
