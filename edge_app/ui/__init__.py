"""The device's screen drawn for a screening team: ``canvas`` (drawing with contrast, sizes and
touch targets recorded), ``views`` (one function per screen state), ``keypad``, ``words``."""
