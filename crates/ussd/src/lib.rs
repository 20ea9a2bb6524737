//! PesaChama's USSD menus for feature phones, in English and Kiswahili, as a pure state
//! machine: session state + latest input + facts the handler loaded -> next state and either a
//! screen or an action. No I/O, no clock; the HTTP handler (`pesachama-api`, `POST /ussd`)
//! loads facts, performs actions, persists the state and answers Africa's Talking.
//!
//! Conventions phone users know: numbered options, `0` back, `00` home, `98` more. Every
//! screen is at most 182 plain GSM characters (checked for every screen of both languages).

pub mod gsm;
pub mod input;
pub mod machine;
pub mod model;
mod navigation;
mod parse;
pub mod render;
mod resume;
pub mod state;
pub mod text;

pub use machine::{Reply, Step, resume, start, step};
pub use model::{Action, Facts, Language, Outcome};
pub use render::Screen;
pub use state::State;
