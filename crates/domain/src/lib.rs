//! PesaChama's domain: values parsed once at the boundary, and the rules over them.
//!
//! Nothing here does I/O or reads a clock; callers pass time in. Past the boundary no function
//! takes a raw `String` or number that means one of these.

#![deny(clippy::float_arithmetic)]

pub mod email;
pub mod money;
pub mod phone;
pub mod secret;
pub mod text;

pub use email::Email;
pub use money::{Currency, Money};
pub use phone::Phone;
pub use secret::{PasswordRules, Pin};
