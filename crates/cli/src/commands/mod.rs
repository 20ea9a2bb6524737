pub mod admin;
pub mod check;
pub mod db;
pub mod delivery;
pub mod keys;
pub mod migrate;
pub mod serve;
pub mod worker;
