//! Password guessing (issue 29, item 6).
