"""When and how fast devices get firmware: maintenance windows per group
(``windows``), and caps on concurrent firmware downloads and bandwidth, per
appliance and per group (``caps`` holds the groups' caps, ``slots`` enforces
them while targets are served)."""
