//! Authentication: passwords, session and API tokens, sign-in throttling.

pub mod password;
pub mod throttle;
pub mod tokens;
