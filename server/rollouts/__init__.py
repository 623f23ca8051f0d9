"""Staged rollouts of a release, wave by wave, gated on the devices' health
(``services``), the check-in's bounded part of it (``gate``), and the
periodic evaluation (``scheduler``)."""
