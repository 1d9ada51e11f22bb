//! Double-entry ledger postings and wallet commands.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::time::{Timestamp, rfc3339};
use crate::{SchemaError, Validate, money, validate};

/// What a posting is for. The postings of one transaction sum to zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PostingKind {
    /// The rider pays fare plus booking fee.
    Fare,
    /// The driver earns fare minus commission.
    DriverEarnings,
    /// The platform keeps commission plus booking fee.
    PlatformFee,
    /// The rider pays a late-cancellation fee.
    CancellationFee,
    /// The driver's share of a cancellation fee.
    CancellationCompensation,
    /// The platform's share of a cancellation fee.
    CancellationRevenue,
    /// Money added to a wallet.
    TopUp,
    /// The counter-posting of a top-up on the clearing account.
    TopUpFunding,
}

impl PostingKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            PostingKind::Fare => "fare",
            PostingKind::DriverEarnings => "driver_earnings",
            PostingKind::PlatformFee => "platform_fee",
            PostingKind::CancellationFee => "cancellation_fee",
            PostingKind::CancellationCompensation => "cancellation_compensation",
            PostingKind::CancellationRevenue => "cancellation_revenue",
            PostingKind::TopUp => "top_up",
            PostingKind::TopUpFunding => "top_up_funding",
        }
    }
}

/// `ledger.entries`, keyed by `account_id`: one posting of a transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// Deterministic: `<txn_id>/<account_id>`; a consumer drops an entry it has seen.
    pub entry_id: String,
    /// The transaction: a trip's settlement uses the trip id, a top-up its command id.
    pub txn_id: String,
    /// `rider:<id>`, `driver:<id>`, `platform:revenue` or `clearing:top_ups`.
    pub account_id: String,
    #[serde(with = "money::cents")]
    pub amount: Decimal,
    pub kind: PostingKind,
    pub trip_id: Option<String>,
    #[serde(with = "rfc3339")]
    pub ts: Timestamp,
}

impl Validate for LedgerEntry {
    fn validate(&self) -> Result<(), SchemaError> {
        validate::id("entry_id", &self.entry_id)?;
        validate::id("txn_id", &self.txn_id)?;
        account("account_id", &self.account_id)
    }
}

/// `wallet.commands`, keyed by `account_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WalletCommand {
    TopUp {
        command_id: String,
        account_id: String,
        #[serde(with = "money::cents")]
        amount: Decimal,
        #[serde(with = "rfc3339")]
        ts: Timestamp,
    },
}

impl WalletCommand {
    pub fn account_id(&self) -> &str {
        match self {
            WalletCommand::TopUp { account_id, .. } => account_id,
        }
    }

    pub fn ts(&self) -> Timestamp {
        match self {
            WalletCommand::TopUp { ts, .. } => *ts,
        }
    }
}

#[derive(Deserialize)]
struct TopUpBody {
    command_id: String,
    account_id: String,
    #[serde(with = "money::cents")]
    amount: Decimal,
    #[serde(with = "rfc3339")]
    ts: Timestamp,
}

impl Validate for WalletCommand {
    fn from_json(bytes: &[u8]) -> Result<Self, SchemaError> {
        crate::codec::decode_tagged(bytes, &["top_up"], |_, bytes| {
            let b: TopUpBody = crate::codec::decode_tracked(bytes)?;
            Ok(WalletCommand::TopUp {
                command_id: b.command_id,
                account_id: b.account_id,
                amount: b.amount,
                ts: b.ts,
            })
        })
    }

    fn validate(&self) -> Result<(), SchemaError> {
        match self {
            WalletCommand::TopUp {
                command_id,
                account_id,
                amount,
                ..
            } => {
                validate::id("command_id", command_id)?;
                wallet_account("account_id", account_id)?;
                validate::positive_amount("amount", *amount)
            }
        }
    }
}

/// Any ledger account: `<kind>:<id>` with a known kind.
fn account(field: &str, value: &str) -> Result<(), SchemaError> {
    validate::id(field, value)?;
    match value.split_once(':') {
        Some(("rider" | "driver" | "platform" | "clearing", id)) if !id.is_empty() => Ok(()),
        _ => Err(SchemaError::invalid(
            field,
            format!("{value:?} is not an account such as \"rider:r1\""),
        )),
    }
}

/// A wallet that can be topped up: a rider's or a driver's.
pub fn wallet_account(field: &str, value: &str) -> Result<(), SchemaError> {
    validate::id(field, value)?;
    match value.split_once(':') {
        Some(("rider" | "driver", id)) if !id.is_empty() => Ok(()),
        _ => Err(SchemaError::invalid(
            field,
            format!("{value:?} is not a wallet account such as \"rider:r1\" or \"driver:d1\""),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode;

    #[test]
    fn negative_top_up_names_amount() {
        let err = decode::<WalletCommand>(
            br#"{"type":"top_up","command_id":"c1","account_id":"rider:r1","amount":"-5.00","ts":"2026-11-02T07:00:00Z"}"#,
        )
        .unwrap_err();
        assert_eq!(err.field(), "amount");
    }

    #[test]
    fn float_amount_is_rejected() {
        let err = decode::<WalletCommand>(
            br#"{"type":"top_up","command_id":"c1","account_id":"rider:r1","amount":5.0,"ts":"2026-11-02T07:00:00Z"}"#,
        )
        .unwrap_err();
        assert_eq!(err.field(), "amount");
    }

    #[test]
    fn platform_wallet_cannot_be_topped_up() {
        let err = decode::<WalletCommand>(
            br#"{"type":"top_up","command_id":"c1","account_id":"platform:revenue","amount":"5","ts":"2026-11-02T07:00:00Z"}"#,
        )
        .unwrap_err();
        assert_eq!(err.field(), "account_id");
    }
}
