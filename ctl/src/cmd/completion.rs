//! `rampartctl completion bash|zsh|fish`: a shell completion script on
//! stdout, generated from the same clap definition the parser uses.

#![allow(clippy::print_stdout, reason = "the script is the command's output")]

use clap::{CommandFactory as _, ValueEnum};
use clap_complete::Shell;

use crate::Cli;

/// Shells a script can be generated for.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CompletionShell {
    /// `source <(rampartctl completion bash)`
    Bash,
    /// `rampartctl completion zsh > "${fpath[1]}/_rampartctl"`
    Zsh,
    /// `rampartctl completion fish > ~/.config/fish/completions/rampartctl.fish`
    Fish,
}

/// Writes the script for `shell` to stdout.
pub fn run(shell: CompletionShell) {
    let shell = match shell {
        CompletionShell::Bash => Shell::Bash,
        CompletionShell::Zsh => Shell::Zsh,
        CompletionShell::Fish => Shell::Fish,
    };
    clap_complete::generate(
        shell,
        &mut Cli::command(),
        "rampartctl",
        &mut std::io::stdout(),
    );
}
