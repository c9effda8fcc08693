//! `TagFilter`: a subscription's tag expression, parsed once and matched per message.
//!
//! The grammar is RocketMQ's: `*` (or an empty expression, as RocketMQ treats it) matches
//! every message; otherwise one or more tags separated by `||`, each trimmed of surrounding
//! whitespace. A message carries at most one tag; it matches when that tag is in the set. A
//! message without a tag matches only `*`.
//!
//! Where RocketMQ silently drops empty parts (`"A || || B"`), this parser refuses them: a
//! stray `||` is almost always a typo, and a subscription that silently means something else
//! is worse than an error. A single `|` is refused for the same reason.
//!
//! Filtering happens in the client today (the broker records the expression for group
//! descriptions); messages filtered out still advance the consumed offset.

use std::collections::BTreeSet;
use std::fmt;

use crate::error::{Error, Result};

/// The longest expression accepted, in bytes.
pub const TAG_EXPRESSION_BYTES_MAX: usize = 4096;
/// The most tags one expression may name.
pub const TAG_EXPRESSION_TAGS_MAX: usize = 256;

/// A parsed tag expression; see the module docs for the grammar.
#[derive(Clone, PartialEq, Eq)]
pub struct TagFilter {
    /// `None` matches everything.
    tags: Option<BTreeSet<String>>,
}

impl TagFilter {
    /// Matches every message, tagged or not.
    pub fn all() -> TagFilter {
        TagFilter { tags: None }
    }

    /// Parses `*` or `TagA || TagB`.
    pub fn parse(expression: &str) -> Result<TagFilter> {
        if expression.len() > TAG_EXPRESSION_BYTES_MAX {
            return Err(invalid(
                expression,
                &format!("longer than {TAG_EXPRESSION_BYTES_MAX} bytes"),
            ));
        }
        let trimmed = expression.trim();
        if trimmed.is_empty() || trimmed == "*" {
            return Ok(TagFilter::all());
        }
        let mut tags = BTreeSet::new();
        for (index, part) in trimmed.split("||").enumerate() {
            let tag = part.trim();
            if tag.is_empty() {
                return Err(invalid(
                    expression,
                    &format!("tag {} is empty (a stray `||`?)", index + 1),
                ));
            }
            if tag == "*" {
                return Err(invalid(expression, "`*` cannot be combined with tags"));
            }
            if tag.contains('|') {
                return Err(invalid(
                    expression,
                    &format!("tag {tag:?} contains `|` (use `||` between tags)"),
                ));
            }
            tags.insert(tag.to_owned());
            if tags.len() > TAG_EXPRESSION_TAGS_MAX {
                return Err(invalid(
                    expression,
                    &format!("more than {TAG_EXPRESSION_TAGS_MAX} tags"),
                ));
            }
        }
        Ok(TagFilter { tags: Some(tags) })
    }

    /// Whether a message with this tag passes the filter.
    pub fn matches(&self, tag: Option<&str>) -> bool {
        match (&self.tags, tag) {
            (None, _) => true,
            (Some(tags), Some(tag)) => tags.contains(tag),
            (Some(_), None) => false,
        }
    }

    /// Whether the filter lets every message through.
    pub fn is_all(&self) -> bool {
        self.tags.is_none()
    }

    /// The canonical expression: `*`, or the tags sorted and joined by ` || `.
    pub fn expression(&self) -> String {
        match &self.tags {
            None => "*".to_owned(),
            Some(tags) => tags
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(" || "),
        }
    }
}

impl fmt::Debug for TagFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TagFilter({})", self.expression())
    }
}

impl fmt::Display for TagFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expression())
    }
}

impl std::str::FromStr for TagFilter {
    type Err = Error;

    fn from_str(expression: &str) -> Result<TagFilter> {
        TagFilter::parse(expression)
    }
}

fn invalid(expression: &str, reason: &str) -> Error {
    let shown: String = expression.chars().take(64).collect();
    Error::InvalidArgument(format!("tag expression {shown:?}: {reason}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_and_empty_match_everything() {
        for expression in ["*", " * ", "", "   "] {
            let filter = TagFilter::parse(expression).unwrap();
            assert!(filter.is_all(), "{expression:?}");
            assert!(filter.matches(Some("anything")));
            assert!(filter.matches(None));
            assert_eq!(filter.expression(), "*");
        }
    }

    #[test]
    fn tags_are_split_trimmed_and_matched_exactly() {
        let filter = TagFilter::parse(" TagA ||TagB||  TagC").unwrap();
        assert!(filter.matches(Some("TagA")));
        assert!(filter.matches(Some("TagC")));
        assert!(!filter.matches(Some("TagD")));
        assert!(!filter.matches(Some("taga")), "tags are case-sensitive");
        assert!(
            !filter.matches(Some("TagA ")),
            "the message's tag is not trimmed"
        );
        assert!(!filter.matches(None), "an untagged message matches only *");
        assert_eq!(filter.expression(), "TagA || TagB || TagC");
        assert_eq!(TagFilter::parse(&filter.expression()).unwrap(), filter);
    }

    #[test]
    fn a_single_tag_is_a_set_of_one() {
        let filter = TagFilter::parse("Orders").unwrap();
        assert!(filter.matches(Some("Orders")));
        assert!(!filter.matches(Some("Order")));
        assert!(!filter.is_all());
    }

    #[test]
    fn malformed_expressions_are_refused_with_the_reason() {
        for (expression, reason) in [
            ("A ||", "empty"),
            ("|| A", "empty"),
            ("A || || B", "empty"),
            ("A | B", "contains `|`"),
            ("A ||| B", "contains `|`"),
            ("* || A", "cannot be combined"),
            ("||", "empty"),
        ] {
            let error = TagFilter::parse(expression).unwrap_err().to_string();
            assert!(error.contains(reason), "{expression:?}: {error}");
        }
    }

    #[test]
    fn oversize_expressions_are_refused() {
        let long = "A".repeat(TAG_EXPRESSION_BYTES_MAX + 1);
        assert!(TagFilter::parse(&long).is_err());
        let many: Vec<String> = (0..=TAG_EXPRESSION_TAGS_MAX)
            .map(|i| format!("T{i}"))
            .collect();
        assert!(TagFilter::parse(&many.join("||")).is_err());
        let enough: Vec<String> = (0..TAG_EXPRESSION_TAGS_MAX)
            .map(|i| format!("T{i}"))
            .collect();
        assert!(TagFilter::parse(&enough.join("||")).is_ok());
    }
}
