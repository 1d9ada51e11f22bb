//! Signed bearer tokens: RS256 JWTs carrying a subject and a role.
//!
//! | role | may |
//! |---|---|
//! | `app` | post every command, read trips, drivers nearby, wallets |
//! | `driver` | post its own pings, status and trip commands (`driver_id` = `sub`), read trips |
//! | `analyst` | SQL, every read |
//! | `hr` | overtime reads and exports |
//! | `admin` | everything, including the internal endpoints instances call each other on |
//!
//! With no keys configured, `fleetstream run` creates a key pair in its data directory (see
//! [`Keys::load_or_create`]) and prints an admin token: authentication is never silently off.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// What a token lets its holder do.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    App,
    Driver,
    Analyst,
    Hr,
    Admin,
}

impl Role {
    pub const ALL: [Role; 5] = [Role::App, Role::Driver, Role::Analyst, Role::Hr, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::App => "app",
            Role::Driver => "driver",
            Role::Analyst => "analyst",
            Role::Hr => "hr",
            Role::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role {s:?} (one of app, driver, analyst, hr, admin)"))
    }
}

/// The claims of a fleetstream token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Who: a driver id for role `driver`, else a client name.
    pub sub: String,
    pub role: Role,
    /// Issued at, seconds since the epoch.
    pub iat: u64,
    /// Expires at, seconds since the epoch.
    pub exp: u64,
    #[serde(default = "issuer")]
    pub iss: String,
}

fn issuer() -> String {
    ISSUER.to_string()
}

/// The `iss` of every token.
pub const ISSUER: &str = "fleetstream";

/// Why keys could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not an RSA key in PEM form: {source}")]
    Pem {
        path: PathBuf,
        source: jsonwebtoken::errors::Error,
    },
    #[error("generating an RSA key pair: {0}")]
    Generate(String),
    #[error("no private key: tokens can only be verified here (configure auth.private_key_file)")]
    NoPrivateKey,
    #[error("signing: {0}")]
    Sign(jsonwebtoken::errors::Error),
}

/// The keys that verify (and, where the private key is known, sign) tokens.
#[derive(Clone)]
pub struct Keys {
    decoding: DecodingKey,
    encoding: Option<EncodingKey>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("can_sign", &self.encoding.is_some())
            .finish()
    }
}

/// Where the generated key pair of a data directory lives.
pub fn generated_paths(data_dir: &Path) -> (PathBuf, PathBuf) {
    let dir = data_dir.join("auth");
    (dir.join("jwt-private.pem"), dir.join("jwt-public.pem"))
}

impl Keys {
    pub fn from_pem(public: &[u8], private: Option<&[u8]>) -> Result<Keys, jsonwebtoken::errors::Error> {
        Ok(Keys {
            decoding: DecodingKey::from_rsa_pem(public)?,
            encoding: private.map(EncodingKey::from_rsa_pem).transpose()?,
        })
    }

    /// Keys from files: a public key, and optionally the private one.
    pub fn from_files(public: &Path, private: Option<&Path>) -> Result<Keys, KeyError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| KeyError::Io {
                path: path.to_path_buf(),
                source,
            })
        };
        let public_pem = read(public)?;
        let decoding = DecodingKey::from_rsa_pem(&public_pem).map_err(|source| KeyError::Pem {
            path: public.to_path_buf(),
            source,
        })?;
        let encoding = match private {
            Some(path) => Some(
                EncodingKey::from_rsa_pem(&read(path)?).map_err(|source| KeyError::Pem {
                    path: path.to_path_buf(),
                    source,
                })?,
            ),
            None => None,
        };
        Ok(Keys { decoding, encoding })
    }

    /// The data directory's generated key pair, created (2048-bit RSA, private key readable by
    /// the owner only) when missing. Returns whether it was created now.
    pub fn load_or_create(data_dir: &Path) -> Result<(Keys, bool), KeyError> {
        let (private, public) = generated_paths(data_dir);
        if private.exists() && public.exists() {
            return Ok((Keys::from_files(&public, Some(&private))?, false));
        }
        let (private_pem, public_pem) = generate_pem()?;
        let dir = private.parent().expect("a file in a folder");
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| KeyError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        write_private(&private, private_pem.as_bytes()).map_err(io(&private))?;
        std::fs::write(&public, public_pem.as_bytes()).map_err(io(&public))?;
        Ok((Keys::from_files(&public, Some(&private))?, true))
    }

    pub fn can_sign(&self) -> bool {
        self.encoding.is_some()
    }

    /// Mints a token for `sub` with `role`, valid for `ttl`.
    pub fn mint(&self, sub: &str, role: Role, ttl: Duration) -> Result<String, KeyError> {
        let key = self.encoding.as_ref().ok_or(KeyError::NoPrivateKey)?;
        let now = now_secs();
        let claims = Claims {
            sub: sub.to_string(),
            role,
            iat: now,
            exp: now + ttl.as_secs(),
            iss: ISSUER.to_string(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, key).map_err(KeyError::Sign)
    }

    /// Checks a token's signature, expiry and issuer.
    pub fn verify(&self, token: &str) -> Result<Claims, jsonwebtoken::errors::Error> {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "sub", "iss"]);
        validation.leeway = 30;
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).map(|data| data.claims)
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A new RSA key pair as (PKCS#8 private PEM, SPKI public PEM).
pub fn generate_pem() -> Result<(String, String), KeyError> {
    use rsa::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _, LineEnding};
    let private = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)
        .map_err(|e| KeyError::Generate(e.to_string()))?;
    let private_pem = private
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| KeyError::Generate(e.to_string()))?;
    let public_pem = private
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| KeyError::Generate(e.to_string()))?;
    Ok((private_pem.to_string(), public_pem))
}

#[cfg(unix)]
fn write_private(path: &Path, pem: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(pem)
}

#[cfg(not(unix))]
fn write_private(path: &Path, pem: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, pem)
}
