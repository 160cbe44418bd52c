"""One module per `sapiens-engine` subcommand (see engine/cli.py)."""
