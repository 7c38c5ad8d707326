//! `agentroom service install|uninstall|status`: run this home's daemon at
//! login (systemd user unit on Linux, launchd agent on macOS).

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;

use super::{ExitStatus, Printer, home_of};
use crate::service::{self, Installed, Platform, ServiceSpec};

/// `agentroom service` subcommands.
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum ServiceCommand {
    /// Write the unit that runs `agentroom daemon --home DIR` and start it.
    Install {
        /// Print the unit instead of installing it.
        #[arg(long)]
        print: bool,
        /// Common options.
        #[command(flatten)]
        common: ServiceArgs,
    },
    /// Stop the unit and remove it.
    Uninstall(ServiceArgs),
    /// Show where the unit is and whether it runs.
    Status(ServiceArgs),
}

// Options every `service` subcommand takes.
#[derive(Debug, Args)]
pub struct ServiceArgs {
    /// Service manager (default: launchd on macOS, systemd elsewhere).
    #[arg(long, value_enum)]
    pub platform: Option<PlatformArg>,
}

/// `--platform` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlatformArg {
    /// A systemd user unit.
    Systemd,
    /// A launchd agent.
    Launchd,
}

/// Run `service`.
pub fn run(
    home: Option<PathBuf>,
    cmd: ServiceCommand,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    let home = home_of(home)?;
    let exe = std::env::current_exe()?;
    let common = match &cmd {
        ServiceCommand::Install { common, .. }
        | ServiceCommand::Uninstall(common)
        | ServiceCommand::Status(common) => common,
    };
    let platform = match common.platform {
        Some(PlatformArg::Systemd) => Platform::Systemd,
        Some(PlatformArg::Launchd) => Platform::Launchd,
        None => Platform::native(),
    };
    let spec = ServiceSpec::new(&exe, home.dir(), platform)?;
    match cmd {
        ServiceCommand::Install { print: true, .. } => {
            let unit = spec.render();
            printer.event(
                "service_unit",
                json!({"platform": platform.name(), "name": spec.name(), "path": spec.unit_path()?, "unit": unit}),
                || Some(unit.trim_end().to_owned()),
            );
        }
        ServiceCommand::Install { print: false, .. } => {
            let (path, outcome) = service::install(&spec)?;
            let (started, todo) = match outcome {
                Installed::Started => (true, Vec::new()),
                Installed::RunThese(cmds) => (false, cmds),
            };
            printer.event(
                "service_installed",
                json!({"platform": platform.name(), "name": spec.name(), "path": path, "started": started, "run": todo}),
                || {
                    Some(if started {
                        format!("Installed and started {} ({}).", spec.name(), path.display())
                    } else {
                        format!(
                            "Installed {}. {} cannot be reached from here; to start it, run:\n  {}",
                            path.display(),
                            if platform == Platform::Systemd {
                                "The systemd user manager"
                            } else {
                                "launchd"
                            },
                            todo.join("\n  ")
                        )
                    })
                },
            );
        }
        ServiceCommand::Uninstall(_) => {
            let (path, existed, todo) = service::uninstall(&spec)?;
            printer.event(
                "service_uninstalled",
                json!({"platform": platform.name(), "name": spec.name(), "path": path, "existed": existed, "run": todo}),
                || {
                    let mut line = if existed {
                        format!("Removed {}.", path.display())
                    } else {
                        format!("No unit at {}; nothing to remove.", path.display())
                    };
                    if !todo.is_empty() {
                        line.push_str(&format!(" Still run:\n  {}", todo.join("\n  ")));
                    }
                    Some(line)
                },
            );
        }
        ServiceCommand::Status(_) => {
            let (path, installed, current, active) = service::status(&spec)?;
            printer.event(
                "service_status",
                json!({"platform": platform.name(), "name": spec.name(), "path": path, "installed": installed, "current": current, "active": active}),
                || {
                    Some(if !installed {
                        format!("{} is not installed ({}).", spec.name(), path.display())
                    } else {
                        format!(
                            "{} is installed at {}{}; {}.",
                            spec.name(),
                            path.display(),
                            if current { "" } else { " (out of date: run `service install` again)" },
                            active.as_deref().map_or("its state is unknown here", |a| a)
                        )
                    })
                },
            );
        }
    }
    Ok(ExitStatus::Success)
}
