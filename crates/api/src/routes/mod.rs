pub mod health;
pub mod pins;
pub mod users;
