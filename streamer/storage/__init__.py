"""Files on disk: partial files, sidecars, the bulk journal, durable publication by rename."""
