pub mod export;
pub mod replay;
pub mod run;
pub mod topics;
