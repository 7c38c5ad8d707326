//! `agentroom setup` (alias `init`) and `agentroom whoami`.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::json;

use super::{ExitStatus, Printer, home_of};
use crate::client::home::Home;
use crate::client::relay_url::RelayUrl;
use crate::client::{identity, now_secs, store};
use crate::crypto::fingerprint;

// Options of `agentroom setup`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  agentroom setup
  agentroom setup --relay wss://relay.example.com/ws
  agentroom setup --force --yes     # new identity; every pairing is lost
  agentroom setup --cwd ./relay     # also write ./relay/.env with a fresh HMAC_SECRET")]
pub struct SetupArgs {
    /// Default relay for `invite create` (ws://, wss://, http:// or https://).
    #[arg(long, visible_alias = "server", value_name = "URL")]
    pub relay: Option<String>,
    /// Accepted for compatibility with the TypeScript agentroom; setup never probes.
    #[arg(long, hide = true)]
    pub no_probe: bool,
    /// Replace the identity with a new one. Every peer, session, queued message and
    /// open invite of this home is lost (peers must pair again). Asks first.
    #[arg(long)]
    pub force: bool,
    /// Answer yes to `--force`'s question (needed when stdin is not a terminal).
    #[arg(long, short = 'y', requires = "force")]
    pub yes: bool,
    /// Also write DIR/.env with a fresh HMAC_SECRET for a relay (`docker compose`
    /// reads it), unless it already sets one. The file is 0600.
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<PathBuf>,
}

/// Create the identity (once) and optionally record a default relay.
pub fn run(home: Option<PathBuf>, args: SetupArgs, printer: Printer) -> anyhow::Result<ExitStatus> {
    crate::crypto::init().map_err(identity::IdentityError::Key)?;
    let home = home_of(home)?;
    let relay = args.relay.as_deref().map(RelayUrl::parse).transpose()?;
    let mut rotated = None;
    if args.force && home.identity_path().exists() {
        rotated = Some(rotate(&home, args.yes, printer)?);
    }
    let (pair, created) = identity::load_or_create(&home)?;
    let mut config = home.load_config()?;
    if let Some(r) = &relay {
        config.relay_url = Some(r.to_string());
        home.save_config(&config)?;
    }
    // Create the database now so a later failure is not a first-run surprise.
    store::Store::open(&home.db_path())?;
    let env_file = match &args.cwd {
        Some(dir) => Some(write_env_file(dir)?),
        None => None,
    };
    let pk = pair.public();
    printer.event(
        "setup",
        json!({
            "created": created,
            "pk": pk.to_b64u(),
            "fingerprint": fingerprint(&pk),
            "home": home.dir(),
            "relay": config.relay_url,
            "rotated": rotated.is_some(),
            "previous_pk": rotated,
            "env_file": env_file.as_ref().map(|(p, _)| p),
            "env_file_written": env_file.as_ref().map(|(_, w)| *w),
        }),
        || {
            let verb = match (created, rotated.is_some()) {
                (true, true) => "New identity",
                (true, false) => "Created",
                _ => "Identity exists",
            };
            let mut s = format!(
                "{verb}: {}\n  public key:  {}\n  fingerprint: {}",
                home.dir().display(),
                pk.to_b64u(),
                fingerprint(&pk)
            );
            if let Some(r) = &config.relay_url {
                s.push_str(&format!("\n  relay:       {r}"));
            }
            if let Some((p, written)) = &env_file {
                let what = if *written { "HMAC_SECRET written to" } else { "HMAC_SECRET kept in" };
                s.push_str(&format!("\n  {what} {}", p.display()));
            }
            Some(s)
        },
    );
    Ok(ExitStatus::Success)
}

/// `--force`: say what is lost, confirm, then discard the identity and its state.
/// Returns the old public key.
fn rotate(home: &Home, yes: bool, printer: Printer) -> anyhow::Result<String> {
    if let Some(room) = crate::room::state::read(home.dir())? {
        if crate::room::state::pid_alive(room.pid) {
            anyhow::bail!(
                "a room is running in this home (pid {}); stop it first with `agentroom{} room stop`",
                room.pid,
                super::home_flag(home)
            );
        }
    }
    let old = identity::load(home)?.public().to_b64u();
    let lost = what_is_lost(home)?;
    printer.note(&format!(
        "agentroom: --force replaces the identity {}.\n  Lost for good: {lost}.\n  \
         Peers must accept a new invite to talk to this agent again.",
        &old[..old.len().min(12)]
    ));
    if !yes {
        if !std::io::stdin().is_terminal() {
            return Err(super::exit::WithStatus {
                status: ExitStatus::Usage,
                error: anyhow::anyhow!(
                    "setup --force needs --yes when stdin is not a terminal (nothing was changed)"
                ),
            }
            .into());
        }
        #[allow(clippy::print_stderr)]
        {
            eprint!("Type 'yes' to continue: ");
            let _ = std::io::stderr().flush();
        }
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if answer.trim() != "yes" {
            anyhow::bail!("setup --force cancelled; nothing was changed");
        }
    }
    identity::discard(home)?;
    Ok(old)
}

/// "2 peer(s), 1 queued message(s), 1 open invite(s)".
fn what_is_lost(home: &Home) -> anyhow::Result<String> {
    if !home.db_path().exists() {
        return Ok("no peers, queued messages or invites".into());
    }
    let db = store::Store::open(&home.db_path())?;
    let peers = store::list_peers(db.conn())?.len();
    let queued = store::outbox_pending_count(db.conn())?;
    let now = now_secs();
    let invites = store::list_invites(db.conn())?
        .iter()
        .filter(|i| i.status == store::InviteStatus::Open && i.expires_at > now)
        .count();
    Ok(format!(
        "{peers} peer(s) and their sessions, {queued} queued message(s), {invites} open invite(s)"
    ))
}

/// `--cwd DIR`: make sure DIR/.env sets HMAC_SECRET. Returns the path and whether
/// it was written now.
fn write_env_file(dir: &Path) -> anyhow::Result<(PathBuf, bool)> {
    let path = dir.join(".env");
    let existing = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(anyhow::Error::new(e).context(format!("reading {}", path.display()))),
    };
    let has_secret = existing
        .lines()
        .any(|l| l.trim_start().strip_prefix("HMAC_SECRET=").is_some_and(|v| !v.trim().is_empty()));
    if has_secret {
        return Ok((path, false));
    }
    let mut key = zeroize::Zeroizing::new([0u8; 32]);
    crate::crypto::CryptoRng::fill(&mut crate::crypto::SystemRng, &mut key[..]);
    let mut text = zeroize::Zeroizing::new(existing);
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&format!("HMAC_SECRET={}\n", hex::encode(*key)));
    // The directory is the user's (a project checkout): create it if missing, but
    // never change its mode; the file itself is 0600.
    std::fs::create_dir_all(dir)
        .and_then(|()| crate::fsutil::write_private_atomic(&path, text.as_bytes()))
        .map_err(|e| anyhow::Error::new(e).context(format!("writing {}", path.display())))?;
    Ok((path, true))
}

/// Print the identity.
pub fn whoami(home: Option<PathBuf>, printer: Printer) -> anyhow::Result<ExitStatus> {
    crate::crypto::init().map_err(identity::IdentityError::Key)?;
    let home = home_of(home)?;
    let pair = match identity::load(&home) {
        // The TypeScript agentroom exits 1 here (ours would be 4, "no session").
        Err(e @ identity::IdentityError::Missing(_)) => {
            return Err(
                super::exit::WithStatus { status: ExitStatus::Failure, error: e.into() }.into()
            );
        }
        r => r?,
    };
    let config = home.load_config()?;
    let pk = pair.public();
    printer.event(
        "whoami",
        json!({
            "pk": pk.to_b64u(),
            "fingerprint": fingerprint(&pk),
            "home": home.dir(),
            "relay": config.relay_url,
        }),
        || Some(format!("public key:  {}\nfingerprint: {}", pk.to_b64u(), fingerprint(&pk))),
    );
    Ok(ExitStatus::Success)
}
