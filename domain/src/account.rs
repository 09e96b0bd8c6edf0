//! Accounts: e-mail addresses, passwords, roles and provider profiles.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::text::{bounded, Lines, Reason, ValidationError};

/// A syntactically valid, normalised (trimmed, lower-cased) e-mail address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        const FIELD: &str = "email";
        let value = bounded(FIELD, input, 3, 254, Lines::Single)?.to_lowercase();
        let invalid = || ValidationError::new(FIELD, Reason::InvalidFormat, "is not an e-mail address");
        let (local, domain) = value.split_once('@').ok_or_else(invalid)?;
        let domain_ok = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && domain
                .chars()
                .all(|c| c.is_alphanumeric() || c == '-' || c == '.');
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && !local.chars().any(|c| c.is_whitespace() || c == '@' || c == '<' || c == '>');
        if !domain_ok || !local_ok {
            return Err(invalid());
        }
        Ok(Self(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A password that meets the policy. Its `Debug` never shows the secret.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub const MIN_CHARS: usize = 12;
    /// Bounded so that hashing cost stays bounded.
    pub const MAX_CHARS: usize = 256;

    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        const FIELD: &str = "password";
        let len = input.chars().count();
        if len < Self::MIN_CHARS {
            return Err(ValidationError::new(
                FIELD,
                Reason::TooShort,
                format!("must be at least {} characters", Self::MIN_CHARS),
            ));
        }
        if len > Self::MAX_CHARS {
            return Err(ValidationError::new(
                FIELD,
                Reason::TooLong,
                format!("must be at most {} characters", Self::MAX_CHARS),
            ));
        }
        Ok(Self(input.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// What an account may do. Every account is a buyer; the other roles are added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Role {
    Buyer,
    Provider,
    Arbitrator,
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Buyer, Role::Provider, Role::Arbitrator, Role::Admin];

    pub const fn code(self) -> &'static str {
        match self {
            Role::Buyer => "buyer",
            Role::Provider => "provider",
            Role::Arbitrator => "arbitrator",
            Role::Admin => "admin",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.code() == code)
    }

    /// Roles only an admin can grant; buyer is implicit and provider is self-service.
    pub const fn is_grantable(self) -> bool {
        matches!(self, Role::Arbitrator | Role::Admin)
    }
}

pub type Roles = BTreeSet<Role>;

/// A provider's public profile, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderProfile {
    pub display_name: String,
    pub bio: String,
    pub region: Region,
    pub languages: Vec<LanguageTag>,
}

impl ProviderProfile {
    pub fn parse(
        display_name: &str,
        bio: &str,
        region: &str,
        languages: &[String],
    ) -> Result<Self, ValidationError> {
        let display_name = bounded("displayName", display_name, 1, 80, Lines::Single)?;
        let bio = bounded("bio", bio, 0, 2_000, Lines::Multi)?;
        let region = Region::parse(region)?;
        if languages.is_empty() {
            return Err(ValidationError::new("languages", Reason::Empty, "name at least one language"));
        }
        if languages.len() > 10 {
            return Err(ValidationError::new("languages", Reason::TooMany, "at most 10 languages"));
        }
        let mut parsed: Vec<LanguageTag> = Vec::with_capacity(languages.len());
        for l in languages {
            let tag = LanguageTag::parse(l)?;
            if parsed.contains(&tag) {
                return Err(ValidationError::new(
                    "languages",
                    Reason::Duplicate,
                    format!("language {} is listed twice", tag.as_str()),
                ));
            }
            parsed.push(tag);
        }
        Ok(Self {
            display_name,
            bio,
            region,
            languages: parsed,
        })
    }
}

/// Where an offering is available or a provider works: a lower-case region code
/// such as `eu`, `us-west`, `global` (letters, digits and hyphens, 2–32 chars).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Region(String);

impl Region {
    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        const FIELD: &str = "region";
        let value = bounded(FIELD, input, 2, 32, Lines::Single)?.to_lowercase();
        let ok = value.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !value.starts_with('-')
            && !value.ends_with('-');
        if !ok {
            return Err(ValidationError::new(
                FIELD,
                Reason::InvalidFormat,
                "use a region code of letters, digits and hyphens, like `eu-west`",
            ));
        }
        Ok(Self(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A BCP 47 primary language tag with an optional region subtag: `en`, `pt-BR`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LanguageTag(String);

impl LanguageTag {
    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        const FIELD: &str = "languages";
        let value = input.trim();
        let mut parts = value.split('-');
        let primary = parts.next().unwrap_or_default();
        let region = parts.next();
        let ok = (2..=3).contains(&primary.len())
            && primary.chars().all(|c| c.is_ascii_alphabetic())
            && region.is_none_or(|r| {
                (r.len() == 2 && r.chars().all(|c| c.is_ascii_alphabetic()))
                    || (r.len() == 3 && r.chars().all(|c| c.is_ascii_digit()))
            })
            && parts.next().is_none();
        if !ok {
            return Err(ValidationError::new(
                FIELD,
                Reason::InvalidFormat,
                format!("`{value}` is not a language tag like `en` or `pt-BR`"),
            ));
        }
        let normalised = match region {
            Some(r) => format!("{}-{}", primary.to_lowercase(), r.to_uppercase()),
            None => primary.to_lowercase(),
        };
        Ok(Self(normalised))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_is_normalised_and_checked() {
        assert_eq!(EmailAddress::parse(" Ada@Example.ORG ").unwrap().as_str(), "ada@example.org");
        for bad in ["", "ada", "ada@", "@example.org", "ada@example", "a b@example.org", "ada@exa..org"] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn password_needs_twelve_characters() {
        assert_eq!(Password::parse("elevenchars").unwrap_err().reason, Reason::TooShort);
        assert!(Password::parse("twelve chars").is_ok());
        assert_eq!(format!("{:?}", Password::parse("twelve chars").unwrap()), "Password(<redacted>)");
    }

    #[test]
    fn only_arbitrator_and_admin_are_grantable() {
        assert!(!Role::Buyer.is_grantable());
        assert!(!Role::Provider.is_grantable());
        assert!(Role::Arbitrator.is_grantable());
        assert_eq!(Role::from_code("arbitrator"), Some(Role::Arbitrator));
        assert_eq!(Role::from_code("root"), None);
    }

    #[test]
    fn provider_profile_validates_each_field() {
        let langs = vec!["en".to_owned(), "pt-br".to_owned()];
        let p = ProviderProfile::parse("Ada", "", "EU-West", &langs).unwrap();
        assert_eq!(p.region.as_str(), "eu-west");
        assert_eq!(p.languages[1].as_str(), "pt-BR");
        assert_eq!(ProviderProfile::parse("", "", "eu", &langs).unwrap_err().field, "displayName");
        assert_eq!(ProviderProfile::parse("A", "", "e u", &langs).unwrap_err().field, "region");
        let dup = vec!["en".to_owned(), "EN".to_owned()];
        assert_eq!(ProviderProfile::parse("A", "", "eu", &dup).unwrap_err().reason, Reason::Duplicate);
        assert_eq!(
            ProviderProfile::parse("A", "", "eu", &["english".to_owned()]).unwrap_err().reason,
            Reason::InvalidFormat
        );
    }
}
