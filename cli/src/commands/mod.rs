pub mod export;
pub mod generate;
pub mod replay;
pub mod run;
pub mod simulate;
pub mod sql;
pub mod token;
pub mod topics;
