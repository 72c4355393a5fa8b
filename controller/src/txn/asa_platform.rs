//! asa transaction platform (being built).
