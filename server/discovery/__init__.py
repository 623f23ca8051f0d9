"""Discovery: what the appliance sees on the plant LAN by mDNS (devices,
extra service types), recorded by the mDNS process and read by the CLI,
the API and the console."""
