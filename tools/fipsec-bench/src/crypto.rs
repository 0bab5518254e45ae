//! `fipsec-bench crypto` (being written).

pub fn run(_args: &[String]) -> Result<(), String> {
    Err("the crypto benchmark is not written yet".into())
}
