//! Integration tests: everyday.
