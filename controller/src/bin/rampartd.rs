//! rampartd entry point.
fn main() {}
