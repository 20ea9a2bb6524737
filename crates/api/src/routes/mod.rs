pub mod chamas;
pub mod health;
pub mod pins;
pub mod transactions;
pub mod users;
