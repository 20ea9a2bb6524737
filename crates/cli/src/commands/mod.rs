pub mod admin;
pub mod check;
pub mod db;
pub mod keys;
pub mod migrate;
pub mod serve;
