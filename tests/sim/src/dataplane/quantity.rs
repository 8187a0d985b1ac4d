//! Kubernetes resource quantities ("500m", "2Gi", "1e3") parsed to integer milli-units, and
//! pod/node resource lists summed and compared in those units.

use std::collections::BTreeMap;

use serde_json::Value;

/// Resource name -> amount in milli-units (cpu "500m" -> 500, memory "1Ki" -> 1_024_000).
pub type ResourceList = BTreeMap<String, i128>;

/// Parses a quantity into milli-units, rounding up like `Quantity::MilliValue`.
pub fn parse_milli(q: &str) -> Result<i128, String> {
    let s = q.trim();
    let err = || format!("failed to parse quantity {q:?}");
    let (neg, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let num_end = body
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(body.len());
    let (num, suffix) = body.split_at(num_end);
    if num.is_empty() || num == "." || num.matches('.').count() > 1 {
        return Err(err());
    }
    let (int_part, frac_part) = num.split_once('.').unwrap_or((num, ""));
    let digits = format!("{int_part}{frac_part}");
    if digits.len() > 30 {
        return Err(err());
    }
    let mantissa: i128 = if digits.is_empty() {
        0
    } else {
        digits.parse().map_err(|_| err())?
    };
    let frac_digits = frac_part.len() as i32;
    let (binary_pow, dec_exp): (u32, i32) = match suffix {
        "" => (0, 0),
        "Ki" => (10, 0),
        "Mi" => (20, 0),
        "Gi" => (30, 0),
        "Ti" => (40, 0),
        "Pi" => (50, 0),
        "Ei" => (60, 0),
        "n" => (0, -9),
        "u" => (0, -6),
        "m" => (0, -3),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        other => {
            let exp = other
                .strip_prefix('e')
                .or_else(|| other.strip_prefix('E'))
                .ok_or_else(err)?;
            let e: i32 = exp.parse().map_err(|_| err())?;
            if !(-40..=40).contains(&e) {
                return Err(err());
            }
            (0, e)
        }
    };
    let mut v = mantissa.checked_mul(1i128 << binary_pow).ok_or_else(err)?;
    let exp = dec_exp + 3 - frac_digits;
    if exp >= 0 {
        v = v
            .checked_mul(10i128.checked_pow(exp as u32).ok_or_else(err)?)
            .ok_or_else(err)?;
    } else {
        let d = 10i128.checked_pow((-exp) as u32).ok_or_else(err)?;
        v = (v + d - 1) / d;
    }
    Ok(if neg { -v } else { v })
}

/// Reads a `{name: quantity}` map, skipping values that do not parse.
pub fn resource_list(v: Option<&Value>) -> ResourceList {
    let mut out = ResourceList::new();
    if let Some(m) = v.and_then(Value::as_object) {
        for (k, q) in m {
            let parsed = match q {
                Value::String(s) => parse_milli(s).ok(),
                Value::Number(n) => n.as_f64().map(|f| (f * 1000.0).ceil() as i128),
                _ => None,
            };
            if let Some(p) = parsed {
                out.insert(k.clone(), p);
            }
        }
    }
    out
}

/// A container's effective requests: `requests`, falling back to `limits` per resource.
fn container_requests(c: &Value) -> ResourceList {
    let res = c.get("resources");
    let mut r = resource_list(res.and_then(|r| r.get("limits")));
    r.extend(resource_list(res.and_then(|r| r.get("requests"))));
    r
}

/// What the scheduler charges for a pod: sum over containers, at least the largest init
/// container, plus `overhead`.
pub fn pod_requests(pod: &Value) -> ResourceList {
    let spec = pod.get("spec");
    let mut total = ResourceList::new();
    if let Some(cs) = spec
        .and_then(|s| s.get("containers"))
        .and_then(Value::as_array)
    {
        for c in cs {
            for (k, v) in container_requests(c) {
                let e = total.entry(k).or_default();
                *e = e.saturating_add(v);
            }
        }
    }
    if let Some(cs) = spec
        .and_then(|s| s.get("initContainers"))
        .and_then(Value::as_array)
    {
        for c in cs {
            for (k, v) in container_requests(c) {
                let e = total.entry(k).or_default();
                *e = (*e).max(v);
            }
        }
    }
    for (k, v) in resource_list(spec.and_then(|s| s.get("overhead"))) {
        let e = total.entry(k).or_default();
        *e = e.saturating_add(v);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_common_quantities() {
        assert_eq!(parse_milli("500m"), Ok(500));
        assert_eq!(parse_milli("2"), Ok(2000));
        assert_eq!(parse_milli("1.5"), Ok(1500));
        assert_eq!(parse_milli("2Gi"), Ok(2 * (1 << 30) * 1000));
        assert_eq!(parse_milli("1e3"), Ok(1_000_000));
        assert_eq!(parse_milli("100M"), Ok(100_000_000_000));
        assert_eq!(parse_milli("1k"), Ok(1_000_000));
        assert_eq!(parse_milli("0.1m"), Ok(1));
        assert_eq!(parse_milli("1152Gi"), Ok(1152 * (1i128 << 30) * 1000));
        assert!(parse_milli("abc").is_err());
        assert!(parse_milli("1Qi").is_err());
        assert!(parse_milli("").is_err());
        assert!(parse_milli("1e999").is_err());
        assert!(parse_milli("1e40").is_err());
        assert!(parse_milli("99999999999999999999999999999Ei").is_err());
    }

    #[test]
    fn pod_requests_fall_back_to_limits_and_take_max_init() {
        let pod = json!({"spec": {
            "containers": [
                {"resources": {"requests": {"cpu": "500m"}, "limits": {"cpu": "1", "nvidia.com/gpu": "2"}}},
                {"resources": {"requests": {"memory": "1Gi"}}}
            ],
            "initContainers": [{"resources": {"requests": {"cpu": "2"}}}]
        }});
        let r = pod_requests(&pod);
        assert_eq!(r["cpu"], 2000);
        assert_eq!(r["nvidia.com/gpu"], 2000);
        assert_eq!(r["memory"], (1i128 << 30) * 1000);
    }
}
