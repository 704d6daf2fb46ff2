"""The `harness` subcommands, one module each; `harness.cli` registers them on its Typer app."""
