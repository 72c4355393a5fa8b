//! sdwan transaction platform (being built).
