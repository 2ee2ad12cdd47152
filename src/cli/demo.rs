//! placeholder
use super::args::DemoArgs;
pub fn run(_: &DemoArgs) -> u8 {
    1
}
