//! SSH CLI transport (being built).
