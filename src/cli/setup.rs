//! `agentroom setup` (alias `init`) and `agentroom whoami`.

use std::path::PathBuf;

use clap::Args;
use serde_json::json;

use super::{ExitStatus, Printer, home_of};
use crate::client::identity;
use crate::client::relay_url::RelayUrl;
use crate::crypto::fingerprint;

/// Options of `agentroom setup`.
#[derive(Debug, Args)]
pub struct SetupArgs {
    /// Default relay for `invite create` (ws://, wss://, http:// or https://).
    #[arg(long, visible_alias = "server", value_name = "URL")]
    pub relay: Option<String>,
    /// Accepted for compatibility with the TypeScript agentroom; setup never probes.
    #[arg(long, hide = true)]
    pub no_probe: bool,
}

/// Create the identity (once) and optionally record a default relay.
pub fn run(home: Option<PathBuf>, args: SetupArgs, printer: Printer) -> anyhow::Result<ExitStatus> {
    crate::crypto::init().map_err(identity::IdentityError::Key)?;
    let home = home_of(home)?;
    let relay = args.relay.as_deref().map(RelayUrl::parse).transpose()?;
    let (pair, created) = identity::load_or_create(&home)?;
    let mut config = home.load_config()?;
    if let Some(r) = &relay {
        config.relay_url = Some(r.to_string());
        home.save_config(&config)?;
    }
    // Create the database now so a later failure is not a first-run surprise.
    crate::client::store::Store::open(&home.db_path())?;
    let pk = pair.public();
    printer.event(
        "setup",
        json!({
            "created": created,
            "public_key": pk.to_b64u(),
            "fingerprint": fingerprint(&pk),
            "home": home.dir(),
            "relay": config.relay_url,
        }),
        || {
            let verb = if created { "Created" } else { "Identity exists" };
            let mut s = format!(
                "{verb}: {}\n  public key:  {}\n  fingerprint: {}",
                home.dir().display(),
                pk.to_b64u(),
                fingerprint(&pk)
            );
            if let Some(r) = &config.relay_url {
                s.push_str(&format!("\n  relay:       {r}"));
            }
            Some(s)
        },
    );
    Ok(ExitStatus::Success)
}

/// Print the identity.
pub fn whoami(home: Option<PathBuf>, printer: Printer) -> anyhow::Result<ExitStatus> {
    crate::crypto::init().map_err(identity::IdentityError::Key)?;
    let home = home_of(home)?;
    let pair = identity::load(&home)?;
    let config = home.load_config()?;
    let pk = pair.public();
    printer.event(
        "whoami",
        json!({
            "public_key": pk.to_b64u(),
            "fingerprint": fingerprint(&pk),
            "home": home.dir(),
            "relay": config.relay_url,
        }),
        || Some(format!("public key:  {}\nfingerprint: {}", pk.to_b64u(), fingerprint(&pk))),
    );
    Ok(ExitStatus::Success)
}
