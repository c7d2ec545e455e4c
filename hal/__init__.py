"""Hardware: serial modems, LEDs, the power-fail input and network sensing, behind factories with honest fakes."""
