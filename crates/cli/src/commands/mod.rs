pub mod admin;
pub mod check;
pub mod db;
pub mod keys;
pub mod mpesa;
pub mod mpesa_commands;
pub mod serve;
