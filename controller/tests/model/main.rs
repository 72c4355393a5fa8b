//! The service model, one binary: the API's exact diagnostics and the
//! golden fixtures (the throughput benchmark is `examples/model_bench.rs`).

mod api;
mod golden;
