//! `fipsec-bench pipeline` (being written).

pub fn run(_args: &[String]) -> Result<(), String> {
    Err("the pipeline benchmark is not written yet".into())
}
