//! String `format` checks the apiserver's OpenAPI validator applies (date-time, date, byte, uuid, IPs, ...).

use base64::Engine;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Whether `s` is valid for `format`; `None` when the format is not validated (unknown, or numeric
/// formats such as int32/int64 which the apiserver does not check at runtime).
pub fn check_format(format: &str, s: &str) -> Option<bool> {
    let ok = match format {
        "date-time" | "datetime" => is_date_time(s),
        "date" => chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok(),
        "byte" => base64::engine::general_purpose::STANDARD.decode(s).is_ok(),
        "uuid" | "uuid3" | "uuid4" | "uuid5" => is_uuid(s),
        "ipv4" => s.parse::<Ipv4Addr>().is_ok(),
        "ipv6" => s.parse::<Ipv6Addr>().is_ok(),
        "cidr" => is_cidr(s),
        "hostname" => is_hostname(s),
        "email" => is_email(s),
        "duration" => is_duration(s),
        "mac" => is_mac(s),
        "uri" => is_request_uri(s),
        _ => return None,
    };
    Some(ok)
}

fn is_date_time(s: &str) -> bool {
    if chrono::DateTime::parse_from_rfc3339(s).is_ok() {
        return true;
    }
    // strfmt also accepts local date-times without a zone.
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").is_ok()
}

fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let lens = [8, 4, 4, 4, 12];
    parts.len() == 5
        && parts
            .iter()
            .zip(lens)
            .all(|(p, n)| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

fn is_cidr(s: &str) -> bool {
    let Some((ip, prefix)) = s.split_once('/') else {
        return false;
    };
    let Ok(prefix) = prefix.parse::<u8>() else {
        return false;
    };
    if ip.parse::<Ipv4Addr>().is_ok() {
        prefix <= 32
    } else {
        ip.parse::<Ipv6Addr>().is_ok() && prefix <= 128
    }
}

fn is_hostname(s: &str) -> bool {
    if s.is_empty() || s.len() > 255 {
        return false;
    }
    s.trim_end_matches('.').split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    })
}

fn is_email(s: &str) -> bool {
    match s.rsplit_once('@') {
        Some((local, domain)) => {
            !local.is_empty() && !domain.is_empty() && !local.contains(char::is_whitespace)
        }
        None => false,
    }
}

/// Go `url.ParseRequestURI`: an absolute URI (`scheme:...`) or an absolute path, parsed as the
/// CEL URL library parses it.
fn is_request_uri(s: &str) -> bool {
    super::cel_urls::parse_request_uri(s).is_ok()
}

fn is_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    (parts.len() == 6 || parts.len() == 8)
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Go `time.ParseDuration` syntax (`1h30m`, `1.5s`, `300ms`, `0`), optionally signed.
fn is_duration(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    if s == "0" {
        return true;
    }
    if s.is_empty() {
        return false;
    }
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 || rest[..num_len].parse::<f64>().is_err() {
            return false;
        }
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        if !matches!(
            &rest[..unit_len],
            "ns" | "us" | "µs" | "μs" | "ms" | "s" | "m" | "h"
        ) {
            return false;
        }
        rest = &rest[unit_len..];
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(
            check_format("date-time", "2024-01-02T03:04:05Z"),
            Some(true)
        );
        assert_eq!(check_format("date-time", "yesterday"), Some(false));
        assert_eq!(check_format("byte", "aGVsbG8="), Some(true));
        assert_eq!(check_format("byte", "not base64!"), Some(false));
        assert_eq!(check_format("duration", "1h30m"), Some(true));
        assert_eq!(check_format("duration", "5 minutes"), Some(false));
        assert_eq!(check_format("cidr", "10.0.0.0/8"), Some(true));
        assert_eq!(check_format("cidr", "10.0.0.0/33"), Some(false));
        assert_eq!(
            check_format("uuid", "123e4567-e89b-12d3-a456-426614174000"),
            Some(true)
        );
        assert_eq!(check_format("int32", "x"), None);
        assert_eq!(check_format("uri", "123"), Some(false));
        assert_eq!(check_format("uri", "https://example.com/a"), Some(true));
    }
}
