//! Command implementations called by `main`.
