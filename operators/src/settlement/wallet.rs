//! Wallets, keyed by account: balances as the sum of postings, each posting counted once by
//! its `entry_id` whatever is replayed; top-up commands become postings.

use fleetstream_schemas::{LedgerEntry, WalletCommand, time};
use fleetstream_topology::store::KvStore;
use fleetstream_topology::{Context, ProcessError, Processor, Record};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::top_up_postings;

/// A wallet's state. Its postings are in the ledger store (and the `ledger` table), keyed by
/// entry id.
///
/// Values written before 2026-11-22 end with the wallet's 20 most recent postings, which
/// nothing read; postcard leaves what follows the last field unread, so they decode as they are.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Wallet {
    #[serde(with = "rust_decimal::serde::str")]
    pub balance: Decimal,
    pub postings: u64,
    pub updated_at: Option<i64>,
}

#[derive(Debug, Clone)]
pub enum WalletInput {
    Entry(LedgerEntry),
    Command(WalletCommand),
}

impl WalletInput {
    pub fn ts(&self) -> i64 {
        match self {
            WalletInput::Entry(e) => time::to_millis(&e.ts),
            WalletInput::Command(c) => time::to_millis(&c.ts()),
        }
    }
}

#[derive(Clone)]
pub struct WalletStep {
    wallets: KvStore<String, Wallet>,
    ledger: KvStore<String, LedgerEntry>,
}

impl WalletStep {
    pub fn new(wallets: KvStore<String, Wallet>, ledger: KvStore<String, LedgerEntry>) -> Self {
        WalletStep { wallets, ledger }
    }
}

impl Processor for WalletStep {
    type InKey = String;
    type InValue = WalletInput;
    type OutKey = String;
    type OutValue = LedgerEntry;

    fn process(
        &mut self,
        ctx: &mut Context<'_, String, LedgerEntry>,
        record: Record<String, WalletInput>,
    ) -> Result<(), ProcessError> {
        match record.value {
            WalletInput::Entry(entry) => {
                if ctx.kv(&self.ledger).get(&entry.entry_id)?.is_some() {
                    return Ok(());
                }
                ctx.kv(&self.ledger).put(&entry.entry_id, &entry);
                let mut wallet = ctx.kv(&self.wallets).get(&entry.account_id)?.unwrap_or_default();
                wallet.balance += entry.amount;
                wallet.postings += 1;
                wallet.updated_at = Some(record.ts);
                ctx.kv(&self.wallets).put(&entry.account_id, &wallet);
                Ok(())
            }
            WalletInput::Command(WalletCommand::TopUp {
                command_id,
                account_id,
                amount,
                ..
            }) => {
                for entry in top_up_postings(&command_id, &account_id, amount, record.ts) {
                    ctx.forward(Record::new(entry.account_id.clone(), entry, record.ts))?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wallet as it was stored before it stopped carrying its recent postings.
    #[derive(Serialize)]
    struct WalletWithRecent {
        #[serde(with = "rust_decimal::serde::str")]
        balance: Decimal,
        postings: u64,
        updated_at: Option<i64>,
        recent: Vec<LedgerEntry>,
    }

    #[test]
    fn a_wallet_stored_with_its_recent_postings_still_decodes() {
        let entry: LedgerEntry = serde_json::from_value(serde_json::json!({
            "entry_id": "t1/driver:d1", "txn_id": "t1", "account_id": "driver:d1",
            "amount": "12.40", "kind": "driver_earnings", "trip_id": "t1",
            "ts": "2026-11-22T08:00:00Z"
        }))
        .expect("a ledger entry");
        let old = WalletWithRecent {
            balance: Decimal::new(1240, 2),
            postings: 1,
            updated_at: Some(1_795_334_400_000),
            recent: vec![entry.clone(), entry],
        };
        let bytes = postcard::to_stdvec(&old).expect("encodes");
        let wallet: Wallet = postcard::from_bytes(&bytes).expect("decodes");
        assert_eq!(
            wallet,
            Wallet {
                balance: Decimal::new(1240, 2),
                postings: 1,
                updated_at: Some(1_795_334_400_000),
            }
        );
    }
}
