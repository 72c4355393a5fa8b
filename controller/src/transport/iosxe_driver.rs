//! IOS-XE apply path.
