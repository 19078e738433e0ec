"""Where a request runs: VM workers over HTTP, or serverless functions (AWS Lambda or local)."""
