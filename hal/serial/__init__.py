"""Serial ports that come and go: opening, re-opening with backoff, finding a modem again by IMEI."""
