"""Media: RTP (RFC 3550), G.711, DTMF (RFC 4733 and in-band), SDP offer/answer (RFC 3264),
prompts and recording. Sans-IO like the SIP core: sessions take `now` and hand back datagrams."""
