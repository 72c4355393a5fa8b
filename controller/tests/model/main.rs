//! The service model, one binary: the API's exact diagnostics, the golden
//! fixtures, and the (ignored) parse benchmark.

mod api;
mod bench;
mod golden;
