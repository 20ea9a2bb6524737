pub mod check;
pub mod db;
pub mod keys;
pub mod serve;
