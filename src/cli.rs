//! Command-line arguments (clap derive): raw values only.
