"""One module per `asset3d` subcommand; each defines `register(subparsers)`."""
