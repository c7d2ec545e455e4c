"""Hardware: serial modems, LEDs, the power-fail input and network sensing.

Each sits behind a factory with an honest fake (a pty modem, gpiozero mock pins).
"""
