"""The `kiln` command: run the gateway and workers, together (`kiln dev`) or apart."""
