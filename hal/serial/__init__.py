"""Serial ports that come and go: opening, reopening with backoff, finding a modem by IMEI."""
