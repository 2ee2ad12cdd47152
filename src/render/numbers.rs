//! Numbers and durations as people read them: thousands separators, whole units.

/// `1234567` as `1,234,567`.
pub fn thousands(n: i128) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A rate as people read it: whole numbers from 100 up (`1,234`), else at most one decimal
/// (`12.5`, `3`).
pub fn rate(per_second: f64) -> String {
    if !per_second.is_finite() {
        return "0".into();
    }
    let tenths = (per_second * 10.0).round() as i128;
    match (per_second >= 100.0, tenths % 10) {
        (true, _) => thousands((per_second.round()) as i128),
        (false, 0) => thousands(tenths / 10),
        (false, t) => format!("{}.{}", thousands(tenths / 10), t.abs()),
    }
}

/// A duration to the second, in the two largest units: `45s`, `3m 20s`, `2h 5m`.
pub fn duration(d: std::time::Duration) -> String {
    let s = d.as_secs_f64().round() as u64;
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m {s}s"),
        (h, 0, _) => format!("{h}h"),
        (h, m, _) => format!("{h}h {m}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_durations_read_as_people_write_them() {
        for (n, text) in [
            (0, "0"),
            (999, "999"),
            (1_000, "1,000"),
            (-1_234_567, "-1,234,567"),
        ] {
            assert_eq!(thousands(n), text);
        }
        for (r, text) in [
            (0.0, "0"),
            (0.44, "0.4"),
            (12.0, "12"),
            (12.55, "12.6"),
            (99.94, "99.9"),
            (1234.56, "1,235"),
            (f64::NAN, "0"),
        ] {
            assert_eq!(rate(r), text, "{r}");
        }
        for (secs, text) in [
            (0, "0s"),
            (45, "45s"),
            (120, "2m"),
            (200, "3m 20s"),
            (3_600, "1h"),
            (7_500, "2h 5m"),
        ] {
            assert_eq!(duration(std::time::Duration::from_secs(secs)), text);
        }
    }
}
