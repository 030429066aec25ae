//! SCIM semantics shared by users, service principals and groups: the simple
//! filters the SDK and the CLI send (`userName eq "a@b.com"`).

use kiln_core::{Error, Result};
use kiln_store::PrincipalRecord;

/// Simple SCIM filters on principals.
pub fn filter_principals(
    all: Vec<PrincipalRecord>,
    filter: Option<&str>,
) -> Result<Vec<PrincipalRecord>> {
    filter_by(all, filter, |p, attribute| match attribute {
        "username" | "applicationid" => Some(p.user_name.clone()),
        "displayname" => Some(p.display_name.clone()),
        "id" => Some(p.id.clone()),
        _ => None,
    })
}

/// Simple SCIM filters: `<attribute> eq|ne|co|sw "<value>"`; `field` gives an
/// item's value of a (lower-cased) attribute, `None` for unknown attributes.
pub fn filter_by<T>(
    all: Vec<T>,
    filter: Option<&str>,
    field: impl Fn(&T, &str) -> Option<String>,
) -> Result<Vec<T>> {
    let Some(filter) = filter.map(str::trim).filter(|f| !f.is_empty()) else {
        return Ok(all);
    };
    let bad = || Error::invalid(format!("Unsupported filter: {filter}"));
    let mut parts = filter.splitn(3, ' ');
    let (attribute, op, value) = (
        parts.next().ok_or_else(bad)?.to_ascii_lowercase(),
        parts.next().ok_or_else(bad)?.to_ascii_lowercase(),
        parts.next().ok_or_else(bad)?,
    );
    let value = value.trim().trim_matches('"').to_lowercase();
    if !["eq", "ne", "co", "sw"].contains(&op.as_str()) {
        return Err(bad());
    }
    let mut out = Vec::new();
    for item in all {
        let Some(f) = field(&item, &attribute) else {
            return Err(bad());
        };
        let f = f.to_lowercase();
        let keep = match op.as_str() {
            "eq" => f == value,
            "ne" => f != value,
            "co" => f.contains(&value),
            _ => f.starts_with(&value),
        };
        if keep {
            out.push(item);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bounded fuzz run: SCIM filters built from random pieces either
    /// select principals or answer INVALID_PARAMETER_VALUE, never panic.
    #[test]
    fn fuzz_filters_never_panic() {
        let mut rng = kiln_core::fuzz::Rng::new(0xD1B5_4A32_D192_ED03);
        let mut next = move || rng.next_u64();
        const PIECES: &[&str] = &[
            "userName",
            "displayName",
            "id",
            "eq",
            "ne",
            "co",
            "sw",
            "pr",
            " ",
            "\"",
            "a@x",
            "and",
            "or",
            "(",
            ")",
            "[",
            "]",
            "\u{0}",
            "é",
            "",
            "  ",
            "members[value eq \"1\"]",
        ];
        let items = vec!["a@x.com".to_string(), "B".to_string(), String::new()];
        for _ in 0..20_000 {
            let filter: String = (0..next() % 8)
                .map(|_| PIECES[(next() % PIECES.len() as u64) as usize])
                .collect::<Vec<_>>()
                .join(if next() % 2 == 0 { " " } else { "" });
            let result = filter_by(items.clone(), Some(&filter), |item, attribute| {
                (attribute == "username").then(|| item.clone())
            });
            if let Err(e) = result {
                assert_eq!(e.code, kiln_core::ErrorCode::InvalidParameterValue);
            }
        }
    }
}
