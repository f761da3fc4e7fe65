//! Passwords from `password_env`, `password_file` or `password_command`; never from YAML.
