//! Integration tests: smtp.
