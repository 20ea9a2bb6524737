pub mod chamas;
pub mod disbursements;
pub mod health;
pub mod meetings;
pub mod notifications;
pub mod pins;
pub mod transactions;
pub mod users;
