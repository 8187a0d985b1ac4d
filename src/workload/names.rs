//! Names of child objects and label values: kept within Kubernetes' 63-character limits by truncating
//! and appending a short hash of the original, so distinct parents never share a child name.

use sha2::{Digest, Sha256};

/// Longest DNS-1035 label and label value.
pub const MAX_NAME_LEN: usize = 63;
/// Length of the hex hash appended to shortened names.
pub const HASH_LEN: usize = 8;

/// The first [`HASH_LEN`] hex digits of SHA-256 of `input`.
pub fn short_hash(input: &str) -> String {
    let digest = Sha256::digest(input.as_bytes());
    let mut out = String::with_capacity(HASH_LEN);
    for byte in digest.iter().take(HASH_LEN / 2) {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// Whether `s` is a DNS-1035 label (`[a-z]([-a-z0-9]*[a-z0-9])?`, at most 63 characters): valid as the
/// name of every kind of object, Services included.
pub fn is_dns1035_label(s: &str) -> bool {
    let bytes = s.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            s.len() <= MAX_NAME_LEN
                && first.is_ascii_lowercase()
                && (last.is_ascii_lowercase() || last.is_ascii_digit())
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        }
        _ => false,
    }
}

/// Whether `s` is a valid label value: empty, or at most 63 of `[-A-Za-z0-9_.]` starting and ending
/// with an alphanumeric character.
pub fn is_label_value(s: &str) -> bool {
    let bytes = s.as_bytes();
    match (bytes.first(), bytes.last()) {
        (None, _) | (_, None) => true,
        (Some(first), Some(last)) => {
            s.len() <= MAX_NAME_LEN
                && first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        }
    }
}

/// The name of a child object of `parent`: `<parent>-<suffix>` (or `<parent>` when `suffix` is empty)
/// when that is a DNS-1035 label, otherwise a sanitised, truncated `<parent>` followed by
/// `-<hash of parent>` and `-<suffix>`. Always a DNS-1035 label of at most 63 characters when `suffix`
/// is a short DNS label (the operator only passes constants such as `cache` or `agent`).
pub fn child_name(parent: &str, suffix: &str) -> String {
    let candidate = if suffix.is_empty() {
        parent.to_string()
    } else {
        format!("{parent}-{suffix}")
    };
    if is_dns1035_label(&candidate) {
        return candidate;
    }
    let hash = short_hash(parent);
    let tail = if suffix.is_empty() {
        format!("-{hash}")
    } else {
        format!("-{hash}-{suffix}")
    };
    let mut base: String = parent
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    if !base.starts_with(|c: char| c.is_ascii_lowercase()) {
        base.insert(0, 'h');
    }
    base.truncate(MAX_NAME_LEN.saturating_sub(tail.len()).max(1));
    let base = base.trim_end_matches('-');
    format!("{base}{tail}")
}

/// `name` as a label value: unchanged when valid (every object name of up to 63 characters is),
/// otherwise truncated, sanitised and suffixed with `-<hash of name>`. Use it wherever an object name
/// goes into a label or a selector, so both sides agree.
pub fn label_value(name: &str) -> String {
    if is_label_value(name) {
        return name.to_string();
    }
    let hash = short_hash(name);
    let mut base: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    base.truncate(MAX_NAME_LEN - HASH_LEN - 1);
    let base = base
        .trim_start_matches(|c: char| !c.is_ascii_alphanumeric())
        .trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
    if base.is_empty() {
        hash
    } else {
        format!("{base}-{hash}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_kept() {
        assert_eq!(child_name("coder", ""), "coder");
        assert_eq!(child_name("coder", "cache"), "coder-cache");
        assert_eq!(child_name("a-b-1", "agent"), "a-b-1-agent");
    }

    #[test]
    fn long_names_are_truncated_with_a_hash() {
        let parent = "a".repeat(200);
        let name = child_name(&parent, "cache");
        assert_eq!(name.len(), MAX_NAME_LEN);
        assert!(is_dns1035_label(&name), "{name}");
        assert!(name.ends_with(&format!("-{}-cache", short_hash(&parent))));
        let plain = child_name(&parent, "");
        assert_eq!(plain.len(), MAX_NAME_LEN);
        assert!(plain.ends_with(&short_hash(&parent)));
    }

    #[test]
    fn truncated_names_of_distinct_parents_differ() {
        let a = format!("{}x", "p".repeat(70));
        let b = format!("{}y", "p".repeat(70));
        assert_ne!(child_name(&a, "agent"), child_name(&b, "agent"));
        assert_ne!(label_value(&a), label_value(&b));
    }

    #[test]
    fn exactly_63_is_kept_and_64_is_shortened() {
        let p63 = "b".repeat(63);
        assert_eq!(child_name(&p63, ""), p63);
        let p64 = "b".repeat(64);
        let n = child_name(&p64, "");
        assert_ne!(n, p64);
        assert!(n.len() <= MAX_NAME_LEN);
        // With a suffix the combined name is what must fit.
        let p57 = "c".repeat(57);
        assert_eq!(child_name(&p57, "agent").len(), 63);
        assert_eq!(child_name(&p57, "agent"), format!("{p57}-agent"));
        let p58 = "c".repeat(58);
        let n = child_name(&p58, "agent");
        assert!(n.len() <= 63 && n.ends_with("-agent") && is_dns1035_label(&n));
    }

    #[test]
    fn names_that_are_not_dns1035_are_sanitised() {
        // Object names may be DNS subdomains: dots and a leading digit are fine for a Deployment but
        // not for a Service.
        let n = child_name("7b.coder", "");
        assert!(is_dns1035_label(&n), "{n}");
        assert!(n.starts_with("h7b-coder-"));
        // "a.b" and "a-b" must not collide.
        assert_ne!(child_name("a.b", ""), child_name("a-b", ""));
        assert_eq!(child_name("a-b", ""), "a-b");
    }

    #[test]
    fn label_values() {
        assert_eq!(label_value("coder"), "coder");
        assert_eq!(label_value("my.model-1"), "my.model-1");
        assert_eq!(label_value(""), "");
        let long = format!("{}.z", "m".repeat(100));
        let v = label_value(&long);
        assert!(is_label_value(&v) && v.len() <= MAX_NAME_LEN, "{v}");
        assert!(v.ends_with(&short_hash(&long)));
        let odd = label_value("---");
        assert!(is_label_value(&odd), "{odd}");
    }

    #[test]
    fn validators() {
        assert!(is_dns1035_label("a"));
        assert!(!is_dns1035_label(""));
        assert!(!is_dns1035_label("1a"));
        assert!(!is_dns1035_label("a-"));
        assert!(!is_dns1035_label("a.b"));
        assert!(!is_dns1035_label("A"));
        assert!(is_label_value("A_b.c-1"));
        assert!(!is_label_value("-a"));
        assert!(!is_label_value(&"x".repeat(64)));
    }

    #[test]
    fn hash_is_stable() {
        // SHA-256("coder") starts with c84a9e3a; a changed hash would rename every child.
        assert_eq!(short_hash("coder"), "c84a9e3a");
        assert_ne!(short_hash("coder"), short_hash("coder2"));
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn child_names_are_always_valid(parent in "[a-z0-9.-]{1,253}", suffix in prop_oneof![Just(""), Just("cache"), Just("agent")]) {
                let name = child_name(&parent, suffix);
                prop_assert!(is_dns1035_label(&name), "{}", name);
                if !suffix.is_empty() {
                    let tail = format!("-{suffix}");
                    prop_assert!(name.ends_with(&tail));
                }
            }

            #[test]
            fn distinct_parents_get_distinct_children(a in "[a-z0-9.-]{1,120}", b in "[a-z0-9.-]{1,120}") {
                prop_assume!(a != b);
                prop_assert_ne!(child_name(&a, "agent"), child_name(&b, "agent"));
            }

            #[test]
            fn label_values_are_always_valid(name in "\\PC{0,300}") {
                let v = label_value(&name);
                prop_assert!(is_label_value(&v), "{:?}", v);
                if is_label_value(&name) {
                    prop_assert_eq!(v, name);
                }
            }
        }
    }
}
