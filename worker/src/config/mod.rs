//! The operator's files, read and validated: the clients file (strict mode,
//! CONTRACT.md §10) and its SIGHUP reload, and the integrations file
//! (CONTRACT.md §9; its reload is the refresh engine's, in
//! `refresh::reload`, as a reload reschedules tokens).

pub mod clients_file;
pub mod clients_reload;
pub mod integrations;
#[cfg(test)]
mod props;
