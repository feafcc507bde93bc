"""The transfers: download, segmented download, upload, bulk, and the one retry loop."""
