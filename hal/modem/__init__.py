"""Serial modem drivers: the AT codec and channel, GSM and V.253 (FXO) voice modems, SMS."""
