//! The environment a handler runs with.
//!
//! A handler is often a language model reading untrusted peer text, so it gets a
//! scrubbed environment rather than ours: the variables a shell script needs to
//! work ([`ALLOWED`] and the `LC_*` locale family), the per-message `AGENTROOM_*`
//! variables, the user's `AGENTROOM_*` settings meant for handlers (such as
//! `AGENTROOM_HANDLER_PROMPT` of the bundled handlers), and whatever the user
//! names with `--pass-env NAME`. Nothing else is
//! inherited: in `room open` our own environment holds the relay's `HMAC_SECRET`
//! (with it a handler could mint session tokens for any identity) and the tunnel's
//! `BORE_SECRET`, and a user's shell usually holds API keys the handler may not
//! need. Those secrets ([`NEVER`]) cannot be passed even by name.

use std::ffi::OsString;

/// Inherited when set: what `sh`, coreutils and most CLIs need to behave normally.
pub const ALLOWED: &[&str] = &["PATH", "HOME", "LANG", "TERM", "TMPDIR", "USER"];
/// Inherited prefixes: the locale family (`LC_ALL`, `LC_CTYPE`, ...) and
/// agentroom's own names (settings for handlers; none holds a secret).
pub const ALLOWED_PREFIXES: &[&str] = &["LC_", "AGENTROOM_"];
/// Never given to a handler, even when named with `--pass-env`: the relay's token
/// keys and the bore tunnel's secret.
pub const NEVER: &[&str] =
    &[crate::env::HMAC_SECRET, crate::env::HMAC_SECRET_PREVIOUS, crate::env::BORE_SECRET];

/// A `--pass-env` name that cannot be honoured.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PassEnvError {
    /// One of [`NEVER`] (the name is kept for callers; clap prints it already).
    #[error("a relay or tunnel secret is never given to a handler")]
    Secret(String),
    /// Empty, or holds `=` or NUL.
    #[error("not an environment variable name")]
    BadName(String),
}

/// Extra variables the user lets through (`--pass-env NAME`, repeatable).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassEnv(Vec<String>);

impl PassEnv {
    /// Checks each name: refuses secrets and malformed names.
    pub fn new(names: Vec<String>) -> Result<Self, PassEnvError> {
        for n in &names {
            if n.is_empty() || n.contains(['=', '\0']) {
                return Err(PassEnvError::BadName(n.clone()));
            }
            if NEVER.contains(&n.as_str()) {
                return Err(PassEnvError::Secret(n.clone()));
            }
        }
        Ok(Self(names))
    }

    /// The names, as given.
    pub fn names(&self) -> &[String] {
        &self.0
    }

    fn allows(&self, name: &str) -> bool {
        self.0.iter().any(|n| n == name)
    }
}

/// Whether an inherited variable reaches the handler.
fn inherited(name: &str, pass: &PassEnv) -> bool {
    if NEVER.contains(&name) {
        return false;
    }
    ALLOWED.contains(&name)
        || ALLOWED_PREFIXES.iter().any(|p| name.starts_with(p))
        || pass.allows(name)
}

/// One message, as its handler sees it in the `AGENTROOM_*` variables.
#[derive(Debug, Clone, Copy)]
pub struct MessageVars<'a> {
    /// The sender's public key (b64u).
    pub sender_pk: &'a str,
    /// Our own public key (b64u).
    pub own_pk: &'a str,
    /// The sender's label (or short key).
    pub sender_label: &'a str,
    /// The envelope id (b64u).
    pub msg_id: &'a str,
    /// The sender's fingerprint.
    pub fingerprint: &'a str,
    /// The home directory.
    pub home: &'a str,
    /// The id of our message this one answers.
    pub reply_to: Option<&'a str>,
}

impl MessageVars<'_> {
    /// The per-message variables. `AGENTROOM_FROM` and `AGENTROOM_PK` keep the
    /// TypeScript agentroom's meanings (sender's key, our key); the `PEER_*` and
    /// `SELF_*` names say which is which. Built here once for `serve` and the
    /// daemon's consumers alike.
    pub fn to_env(&self) -> Vec<(String, String)> {
        let var = |k: &str, v: &str| (String::from(k), String::from(v));
        let mut env = vec![
            var(crate::env::AGENTROOM_FROM, self.sender_pk),
            var(crate::env::AGENTROOM_PK, self.own_pk),
            var(crate::env::AGENTROOM_PEER_PK, self.sender_pk),
            var(crate::env::AGENTROOM_PEER_LABEL, self.sender_label),
            var(crate::env::AGENTROOM_SELF_PK, self.own_pk),
            var(crate::env::AGENTROOM_MSG_ID, self.msg_id),
            var(crate::env::AGENTROOM_FINGERPRINT, self.fingerprint),
            var(crate::env::AGENTROOM_HOME, self.home),
        ];
        if let Some(r) = self.reply_to {
            env.push(var(crate::env::AGENTROOM_REPLY_TO, r));
        }
        env
    }
}

/// The handler's whole environment: the allowed part of `parent`, then `vars`
/// (the per-message `AGENTROOM_*` values, which win over inherited ones).
pub fn build(
    parent: impl IntoIterator<Item = (OsString, OsString)>,
    pass: &PassEnv,
    vars: &[(String, String)],
) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = parent
        .into_iter()
        .filter(|(k, _)| k.to_str().is_some_and(|k| inherited(k, pass)))
        .filter(|(k, _)| !vars.iter().any(|(v, _)| k.to_str() == Some(v.as_str())))
        .collect();
    env.extend(vars.iter().map(|(k, v)| (OsString::from(k), OsString::from(v))));
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parent() -> Vec<(OsString, OsString)> {
        [
            ("PATH", "/bin"),
            ("LC_ALL", "C"),
            ("HMAC_SECRET", "s3cret"),
            ("BORE_SECRET", "b0re"),
            ("OPENAI_API_KEY", "sk"),
            ("AGENTROOM_FROM", "stale"),
            ("AGENTROOM_HANDLER_PROMPT", "be brief"),
        ]
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect()
    }

    fn names(env: &[(OsString, OsString)]) -> Vec<String> {
        env.iter().map(|(k, _)| k.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn only_the_allowlist_and_our_vars_pass() {
        let env = build(parent(), &PassEnv::default(), &[("AGENTROOM_FROM".into(), "pk".into())]);
        assert_eq!(names(&env), ["PATH", "LC_ALL", "AGENTROOM_HANDLER_PROMPT", "AGENTROOM_FROM"]);
        assert_eq!(env[3].1, "pk");
    }

    #[test]
    fn pass_env_lets_a_named_variable_through() {
        let pass = PassEnv::new(vec!["OPENAI_API_KEY".into()]).unwrap();
        assert!(names(&build(parent(), &pass, &[])).contains(&"OPENAI_API_KEY".to_owned()));
    }

    #[test]
    fn secrets_cannot_be_passed_by_name() {
        for s in NEVER {
            assert_eq!(PassEnv::new(vec![(*s).into()]), Err(PassEnvError::Secret((*s).into())));
        }
        assert!(PassEnv::new(vec!["A=B".into()]).is_err());
        assert!(PassEnv::new(vec![String::new()]).is_err());
    }
}
