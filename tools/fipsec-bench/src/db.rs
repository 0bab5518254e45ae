//! `fipsec-bench db` (being written).

pub fn run(_args: &[String]) -> Result<(), String> {
    Err("the db benchmark is not written yet".into())
}
