"""The `streamer` command: parser and dispatch in `main`, one module per command."""
