//! Durations as operators write them: `30s`, `5m`, `24h`, `7d`, `1h30m`, `500ms`.

use std::time::Duration;

const EXAMPLES: &str = "write e.g. `30s`, `5m`, `24h`, `7d`, `1h30m`";

/// Parses a duration; the message says what was wrong.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err(format!("empty duration; {EXAMPLES}"));
    }
    let mut total: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!("`{text}` is not a duration; {EXAMPLES}"));
        }
        let number: u128 = rest[..digits]
            .parse()
            .map_err(|_| format!("`{text}` is too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let millis_per_unit: u128 = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            // A bare number (`5`) lacks only its unit; `5 minutes` or `1.5h` is another notation.
            "" if rest.is_empty() => {
                return Err(format!("`{text}` needs a unit (ms, s, m, h, d)"));
            }
            "" => return Err(format!("`{text}` is not a duration; {EXAMPLES}")),
            unit => {
                return Err(format!(
                    "unknown unit `{unit}` in `{text}`; use ms, s, m, h or d"
                ));
            }
        };
        rest = &rest[unit_len..];
        total = number
            .checked_mul(millis_per_unit)
            .and_then(|v| total.checked_add(v))
            .filter(|v| *v <= u128::from(u64::MAX))
            .ok_or_else(|| format!("`{text}` is too large"))?;
    }
    Ok(Duration::from_millis(total as u64))
}

/// Formats a duration the way it is parsed (`1h30m`).
pub fn format(duration: Duration) -> String {
    let mut ms = duration.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats() {
        let cases = [
            ("30s", Some(30_000)),
            ("5m", Some(300_000)),
            ("24h", Some(86_400_000)),
            ("7d", Some(604_800_000)),
            ("1h30m", Some(5_400_000)),
            ("500ms", Some(500)),
            ("5", None),
            ("h", None),
            ("5 minutes", None),
            ("5y", None),
            ("", None),
            ("99999999999999999999999d", None),
        ];
        for (text, expected) in cases {
            assert_eq!(
                parse(text).ok().map(|d| d.as_millis() as u64),
                expected,
                "{text}"
            );
        }
        assert_eq!(format(Duration::from_millis(5_400_000)), "1h30m");
    }

    #[test]
    fn messages_say_what_is_wrong() {
        let not_a_duration = |text: &str| {
            format!("`{text}` is not a duration; write e.g. `30s`, `5m`, `24h`, `7d`, `1h30m`")
        };
        let cases = [
            ("5", "`5` needs a unit (ms, s, m, h, d)".to_string()),
            ("5 minutes", not_a_duration("5 minutes")),
            ("1.5h", not_a_duration("1.5h")),
            ("5m 30s", not_a_duration("5m 30s")),
            ("h", not_a_duration("h")),
            (
                "5y",
                "unknown unit `y` in `5y`; use ms, s, m, h or d".to_string(),
            ),
            (
                "5minutes",
                "unknown unit `minutes` in `5minutes`; use ms, s, m, h or d".to_string(),
            ),
            (
                "",
                "empty duration; write e.g. `30s`, `5m`, `24h`, `7d`, `1h30m`".to_string(),
            ),
        ];
        for (text, message) in cases {
            assert_eq!(parse(text), Err(message), "{text:?}");
        }
    }
}
