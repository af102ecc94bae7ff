//! Validation of the simple fields the API accepts; each error names its field.

use crate::error::ApiError;
use crate::tenancy::Role;

/// Longest name of a person, organization or token.
pub const MAX_NAME: usize = 80;

/// A normalized email address (trimmed; compared case-insensitively by the store).
pub fn email(field: &'static str, raw: &str) -> Result<String, ApiError> {
    let e = raw.trim();
    let valid = e.len() <= 254
        && !e.chars().any(|c| c.is_whitespace() || c.is_control())
        && e.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains('@')
        });
    if valid {
        Ok(e.to_string())
    } else {
        Err(ApiError::invalid(
            field,
            "enter an email address such as name@example.com",
        ))
    }
}

/// A display name: 1 to [`MAX_NAME`] characters, no control characters.
pub fn name(field: &'static str, raw: &str) -> Result<String, ApiError> {
    let n = raw.trim();
    if n.is_empty() || n.chars().count() > MAX_NAME || n.chars().any(char::is_control) {
        Err(ApiError::invalid(
            field,
            format!("the name must have 1 to {MAX_NAME} printable characters"),
        ))
    } else {
        Ok(n.to_string())
    }
}

/// An organization slug: 2 to 40 of `a-z`, `0-9` and inner `-`.
pub fn slug(field: &'static str, raw: &str) -> Result<String, ApiError> {
    let s = raw.trim();
    let ok = (2..=40).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(s.to_string())
    } else {
        Err(ApiError::invalid(
            field,
            "the slug must have 2 to 40 lower-case letters, digits or inner hyphens",
        ))
    }
}

/// A role an organization's user or API token may have.
pub fn staff_role(field: &'static str, role: Role) -> Result<Role, ApiError> {
    if role.is_org_staff() {
        Ok(role)
    } else {
        Err(ApiError::invalid(
            field,
            "the role must be org_admin or agent",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert_eq!(
            email("e", " Ana@Shop.example ").unwrap(),
            "Ana@Shop.example"
        );
        for bad in [
            "",
            "ana",
            "ana@",
            "@shop.example",
            "ana@shop",
            "a b@shop.example",
            "ana@.example",
        ] {
            assert!(email("e", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn slugs_and_names() {
        assert!(slug("s", "demo-shop").is_ok());
        for bad in ["a", "-demo", "demo-", "Demo", "demo shop", &"x".repeat(41)] {
            assert!(slug("s", bad).is_err(), "{bad}");
        }
        assert!(name("n", "  ").is_err());
        assert!(name("n", "Zoë Martin").is_ok());
        assert!(name("n", "bad\u{7}").is_err());
    }
}
