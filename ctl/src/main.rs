//! rampartctl entry point.
fn main() {}
