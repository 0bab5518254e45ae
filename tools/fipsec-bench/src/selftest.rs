//! `fipsec-bench selftest` (being written).

pub fn run(_args: &[String]) -> Result<(), String> {
    Err("the selftest benchmark is not written yet".into())
}
