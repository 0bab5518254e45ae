//! The `fipsec-setkey` command.
fn main() {}
