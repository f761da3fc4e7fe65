//! Provider presets (qq, 163, 126, gmail, outlook, ...): host, port, security.
