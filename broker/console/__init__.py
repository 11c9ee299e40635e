"""The operator console: served by `broker serve` on the admin listener under /console/, read
from the same store as the gateway (on PostgreSQL, every node's console shows the cluster).
See docs/console.md."""
