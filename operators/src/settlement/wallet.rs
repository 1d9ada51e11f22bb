//! Wallets, keyed by account: balances as the sum of postings, each posting counted once by
//! its `entry_id` whatever is replayed; top-up commands become postings.

use fleetstream_schemas::{LedgerEntry, WalletCommand, time};
use fleetstream_topology::store::KvStore;
use fleetstream_topology::{Context, ProcessError, Processor, Record};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::top_up_postings;

/// How many recent postings a wallet keeps for queries.
pub const RECENT_POSTINGS: usize = 20;

/// A wallet's state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Wallet {
    #[serde(with = "rust_decimal::serde::str")]
    pub balance: Decimal,
    pub postings: u64,
    pub updated_at: Option<i64>,
    /// Newest last.
    pub recent: Vec<LedgerEntry>,
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
                if wallet.recent.len() >= RECENT_POSTINGS {
                    wallet.recent.remove(0);
                }
                let account = entry.account_id.clone();
                wallet.recent.push(entry);
                ctx.kv(&self.wallets).put(&account, &wallet);
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
