//! Percentages on the command line (`--failed-pct 2.5`): a number from 0 to 100.

use std::fmt;
use std::str::FromStr;

/// A share written in percent, `0..=100`.
#[derive(Clone, Copy, Debug, Default, PartialEq, PartialOrd)]
pub struct Percent(f64);

impl Percent {
    /// The share as a fraction, `0..=1`.
    pub fn share(self) -> f64 {
        self.0 / 100.0
    }

    /// The number as written, `0..=100`.
    pub fn value(self) -> f64 {
        self.0
    }
}

impl FromStr for Percent {
    type Err = String;

    fn from_str(text: &str) -> Result<Percent, String> {
        match text.trim().parse::<f64>() {
            Ok(p) if (0.0..=100.0).contains(&p) => Ok(Percent(p)),
            _ => Err(format!("`{text}` is not a percentage from 0 to 100")),
        }
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::Percent;

    fn case(text: &str, expected: Option<f64>) {
        assert_eq!(
            text.parse::<Percent>().ok().map(Percent::value),
            expected,
            "`{text}`"
        );
    }

    #[test]
    fn percentages_lie_between_0_and_100() {
        case("0", Some(0.0));
        case("2.5", Some(2.5));
        case("100", Some(100.0));
        case("100.1", None);
        case("-1", None);
        case("NaN", None);
        case("inf", None);
        case("five", None);
        case("", None);
    }
}
