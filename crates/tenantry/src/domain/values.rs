//! Validated input values. Each `parse` returns a message fit for a 422 problem.

use std::fmt;

/// A URL-safe identifier chosen by people: 2-63 of `a-z`, `0-9` and `-`, not starting or
/// ending with `-`. Stored lowercase.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slug(String);

impl Slug {
    /// Validates and lowercases a slug.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let slug = raw.trim().to_ascii_lowercase();
        let valid_chars = slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !(2..=63).contains(&slug.len()) {
            return Err("must be 2 to 63 characters long".to_owned());
        }
        if !valid_chars || slug.starts_with('-') || slug.ends_with('-') {
            return Err("may contain only a-z, 0-9 and inner hyphens".to_owned());
        }
        Ok(Self(slug))
    }

    /// The slug.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A display name: 1-100 characters after trimming, no control characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    /// Validates a name.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let name = raw.trim();
        if name.is_empty() {
            return Err("must not be empty".to_owned());
        }
        if name.chars().count() > 100 {
            return Err("must be at most 100 characters".to_owned());
        }
        if name.chars().any(char::is_control) {
            return Err("must not contain control characters".to_owned());
        }
        Ok(Self(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert_eq!(Slug::parse(" Acme-Co ").unwrap().as_str(), "acme-co");
        assert!(Slug::parse("a").is_err());
        assert!(Slug::parse("-acme").is_err());
        assert!(Slug::parse("acme_co").is_err());
        assert!(Slug::parse(&"a".repeat(64)).is_err());
    }

    #[test]
    fn names() {
        assert_eq!(DisplayName::parse("  Acme ").unwrap().as_str(), "Acme");
        assert!(DisplayName::parse("   ").is_err());
        assert!(DisplayName::parse("a\u{0}b").is_err());
        assert!(DisplayName::parse(&"x".repeat(101)).is_err());
    }
}

/// An email address: trimmed, at most 254 characters, one `@` with text on both sides and
/// a dot in the domain, no spaces or control characters. Stored lowercase, so equality
/// is case-insensitive on every backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    /// Validates an address.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let email = raw.trim();
        let invalid = || "is not a valid email address".to_owned();
        if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid());
        }
        let (local, domain) = email.split_once('@').ok_or_else(invalid)?;
        if local.is_empty()
            || domain.contains('@')
            || !domain.contains('.')
            || domain.starts_with('.')
            || domain.ends_with('.')
        {
            return Err(invalid());
        }
        Ok(Self(email.to_lowercase()))
    }

    /// The address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod email_tests {
    use super::Email;

    #[test]
    fn emails() {
        assert_eq!(
            Email::parse(" Ann@Example.com ").unwrap().as_str(),
            "ann@example.com"
        );
        for bad in [
            "",
            "ann",
            "ann@",
            "@x.io",
            "a b@x.io",
            "a@b@x.io",
            "a@localhost",
            "a@.io",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }
}
